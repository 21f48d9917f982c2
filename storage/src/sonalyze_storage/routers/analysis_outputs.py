"""``/v1/analysis-outputs``: one analysis run of one measurement, keyed by ``(measurement, analysis_run)``.

The measurement is named by its storage id or by ``(job_id, upload_name)``; both are resolved to the
row, so the stored output always carries all three and a missing measurement is a 409.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_protocol.errors import Conflict
from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import AnalysisOutput, Measurement
from sonalyze_storage.schemas import (
    AnalysisOutputCreate,
    AnalysisOutputFilters,
    AnalysisOutputRead,
    AnalysisOutputUpdate,
)


async def resolve_measurement(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("measurement_id") is not None:
        measurement = await session.get(Measurement, data["measurement_id"])
        named = f"measurement '{data['measurement_id']}'"
    else:
        query = select(Measurement).where(
            Measurement.job_id == data["job_id"], Measurement.upload_name == data["upload_name"]
        )
        measurement = (await session.scalars(query)).first()
        named = f"measurement of job '{data['job_id']}' upload '{data['upload_name']}'"
    if measurement is None:
        raise Conflict(f"{named} is not recorded (record the measurement first)")
    if data.get("job_id") is not None and (data["job_id"], data["upload_name"]) != (
        measurement.job_id,
        measurement.upload_name,
    ):
        raise Conflict(f"{named} has job_id/upload_name other than the ones given")
    return {**data, "measurement_id": measurement.id, "job_id": measurement.job_id,
            "upload_name": measurement.upload_name}  # fmt: skip


ENTITY = Entity(
    name="analysis output",
    path="analysis-outputs",
    model=AnalysisOutput,
    create=AnalysisOutputCreate,
    update=AnalysisOutputUpdate,
    read=AnalysisOutputRead,
    filters=AnalysisOutputFilters,
    natural_key=("measurement_id", "analysis_run"),
    prepare=resolve_measurement,
)

router = crud_router(ENTITY)
