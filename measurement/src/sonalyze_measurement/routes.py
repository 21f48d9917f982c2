"""HTTP endpoints: the measurement signal, jobs, uploads, recordings, analysis."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from sonalyze_measurement import service
from sonalyze_measurement.reference_store import MEDIA_TYPES
from sonalyze_measurement.schemas import (
    AnalysisResults,
    Announcement,
    JobCreate,
    JobCreated,
    JobView,
    RecordingAnnouncement,
    SessionRecord,
    SessionRegistration,
    SignalInfo,
    SignalQuery,
    UploadInfo,
)
from sonalyze_measurement.service import Services
from sonalyze_measurement.uploads import receive_upload
from sonalyze_protocol.auth import require_internal_token, settings_token
from sonalyze_protocol.disconnect import stop_when_client_leaves

router = APIRouter(prefix="/v1")

SIGNAL_ID_HEADER = "X-Signal-Id"
SIGNAL_TIMING_HEADER = "X-Signal-Timing"
AUDIO_HASH_HEADER = "X-Audio-Hash"
TIMING_HEADER_FIELDS = (
    "sample_rate_hz",
    "n_samples",
    "total_duration_s",
    "chirp1_start_s",
    "chirp_duration_s",
    "sweep_start_s",
    "sweep_duration_s",
    "sweep_end_s",
    "decay_s",
    "chirp2_start_s",
    "tail_silence_s",
    "f_start_hz",
    "f_end_hz",
)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


SignalQueryDep = Annotated[SignalQuery, Query()]


@router.get("/measurement/audio", response_class=Response, tags=["signal"])
async def measurement_audio(services: ServicesDep, query: SignalQueryDep) -> Response:
    """The measurement signal (mono 16-bit WAV or FLAC); X-Signal-Id, X-Signal-Timing, X-Audio-Hash describe it."""
    signal = await service.resolve_signal(services, query)
    body = await asyncio.to_thread(services.references.audio_bytes, signal, query.format)
    timing = "; ".join(f"{name}={signal.timing[name]}" for name in TIMING_HEADER_FIELDS)
    return Response(
        body,
        media_type=MEDIA_TYPES[query.format],
        headers={
            SIGNAL_ID_HEADER: signal.signal_id,
            SIGNAL_TIMING_HEADER: timing,
            AUDIO_HASH_HEADER: services.references.audio_hash(signal, query.format),
            "Content-Disposition": f'attachment; filename="{signal.signal_id}.{query.format}"',
            # a session's signal is looked up, so only parameter queries name immutable bytes
            "Cache-Control": "no-cache" if query.session_id else "public, max-age=31536000, immutable",
        },
    )


@router.get("/measurement/signal", response_model=SignalInfo, tags=["signal"])
async def measurement_signal(services: ServicesDep, query: SignalQueryDep) -> dict[str, Any]:
    """The signal's id, the timing of its parts and its body's hash (same query as /v1/measurement/audio)."""
    return await service.signal_info(services, query)


@router.get("/measurement/audio/info", response_model=SignalInfo, tags=["signal"])
async def measurement_audio_info(services: ServicesDep, query: SignalQueryDep) -> dict[str, Any]:
    """The app's name for /v1/measurement/signal: the signal's timing as JSON."""
    return await service.signal_info(services, query)


@router.put(
    "/measurement/sessions/{session_id}",
    response_model=SessionRecord,
    dependencies=[Depends(require_internal_token(settings_token))],
    tags=["internal"],
)
async def register_session(services: ServicesDep, session_id: str, body: SessionRegistration) -> SessionRecord:
    """The lobby says which job and signal a measurement session uses (internal token; idempotent)."""
    # file reads and an fsync'd write: off the event loop, so uploads and /health never wait behind them
    return await asyncio.to_thread(service.register_session, services, session_id, body)


@router.post("/jobs", response_model=JobCreated, status_code=201, tags=["jobs"])
async def create_job(services: ServicesDep, body: JobCreate) -> JobCreated:
    """Create a measurement job with the room map and free-form metadata."""
    return await service.create_job(services, body)


@router.get("/jobs/{job_id}", response_model=JobView, tags=["jobs"])
async def get_job(services: ServicesDep, job_id: str) -> JobView:
    """The job: map, meta, signal, uploads, announced recordings and the last analysis."""
    return await service.get_job(services, job_id)


@router.post("/jobs/{job_id}/uploads/{upload_name:path}", response_model=UploadInfo, status_code=200, tags=["jobs"])
async def upload_recording(services: ServicesDep, request: Request, job_id: str, upload_name: str) -> UploadInfo:
    """Store a recording (raw WAV/FLAC body or multipart field `file`); the same name again replaces it.

    Answers 200 (not 201): the phone app accepts exactly 200.
    """
    await receive_upload(request, services.jobs, job_id, upload_name, services.settings.max_upload_bytes)
    info = await service.get_upload(services, job_id, upload_name)
    service.record_upload(services, job_id, info)
    return info


@router.get("/jobs/{job_id}/uploads/{upload_name:path}", response_model=UploadInfo, tags=["jobs"])
async def get_upload(services: ServicesDep, job_id: str, upload_name: str) -> UploadInfo:
    """An upload's metadata once it is stored (404 before)."""
    return await service.get_upload(services, job_id, upload_name)


@router.put("/jobs/{job_id}/recordings/{upload_name:path}", response_model=Announcement, tags=["jobs"])
async def announce_recording(
    services: ServicesDep, job_id: str, upload_name: str, body: RecordingAnnouncement
) -> Announcement:
    """Say which speaker and microphone slots an upload belongs to (idempotent; before or after the upload)."""
    return await service.announce_recording(services, job_id, upload_name, body)


@router.post("/jobs/{job_id}/analyze", response_model=AnalysisResults, tags=["analysis"])
async def analyze(services: ServicesDep, job_id: str, request: Request) -> AnalysisResults:
    """Analyse every upload of the job and answer (and store) the results.

    A client that disconnects first stops the analysis (its workers are ended and replaced)."""
    async with stop_when_client_leaves(request):
        results, summary = await service.analyze_job(services, job_id)
    return AnalysisResults(job_id=job_id, results=results, summary=summary)
