"""Gateway events served by the measurement service (``POST /gateway/handle``)."""

from __future__ import annotations

from typing import Any

from sonalyze_measurement import service
from sonalyze_measurement.schemas import AnalysisRun, JobCreate, JobCreated, JobRef, JobView, SignalQuery
from sonalyze_protocol.handlers import Handler, HandlerTable, RequestContext


async def create_job(context: RequestContext, body: JobCreate) -> JobCreated:
    return await service.create_job(context.state.services, body)


async def get_job(context: RequestContext, body: JobRef) -> JobView:
    return await service.get_job(context.state.services, body.job_id)


async def run_analysis(context: RequestContext, body: AnalysisRun) -> dict[str, Any]:
    return await service.run_analysis(context.state.services, body)


async def get_audio_info(context: RequestContext, body: SignalQuery) -> dict[str, Any]:
    return await service.signal_info(context.state.services, body)


ANALYSIS_EVENTS = frozenset({"analysis.run"})
"""Events whose work stops when the caller leaves (the gateway closes its connection)."""

HANDLERS: HandlerTable[RequestContext] = HandlerTable(
    {
        "measurement.create_job": Handler(JobCreate, create_job),
        "measurement.get_job": Handler(JobRef, get_job),
        "analysis.run": Handler(AnalysisRun, run_analysis),
        "measurement.get_audio_info": Handler(SignalQuery, get_audio_info),
    }
)
