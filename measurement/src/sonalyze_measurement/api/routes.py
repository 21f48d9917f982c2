"""HTTP endpoints: the measurement signal, jobs, uploads, recordings, analysis."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from sonalyze_measurement import service
from sonalyze_measurement.analysis.audio_generator import DEFAULT_SAMPLE_RATE_HZ, resolve_params
from sonalyze_measurement.models import (
    AnalysisResults,
    Announcement,
    JobCreate,
    JobCreated,
    JobView,
    RecordingAnnouncement,
    SignalInfo,
    UploadInfo,
)
from sonalyze_measurement.reference_store import StoredSignal
from sonalyze_measurement.service import Services
from sonalyze_measurement.uploads import receive_upload

router = APIRouter(prefix="/v1")

SIGNAL_ID_HEADER = "X-Signal-Id"
SIGNAL_TIMING_HEADER = "X-Signal-Timing"
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


async def signal_for_query(
    services: ServicesDep,
    sample_rate: Annotated[int, Query(description="Sample rate in Hz, 8000-192000")] = DEFAULT_SAMPLE_RATE_HZ,
    duration_s: Annotated[float | None, Query(description="Sweep length in s, 1-30 (default 5)")] = None,
    f_start_hz: Annotated[float | None, Query(description="Sweep start in Hz, 20-1000 (default 50)")] = None,
    f_end_hz: Annotated[
        float | None, Query(description="Sweep end in Hz, 4*f_start_hz to 0.475*sample_rate (default 20000)")
    ] = None,
) -> StoredSignal:
    params = resolve_params(sample_rate, duration_s, f_start_hz, f_end_hz)
    return await services.references.ensure(params)


SignalDep = Annotated[StoredSignal, Depends(signal_for_query)]


@router.get("/measurement/audio", response_class=Response, tags=["signal"])
async def measurement_audio(services: ServicesDep, signal: SignalDep) -> Response:
    """The measurement signal as a mono 16-bit WAV; X-Signal-Id and X-Signal-Timing describe it."""
    timing = "; ".join(f"{name}={signal.timing[name]}" for name in TIMING_HEADER_FIELDS)
    return Response(
        services.references.wav_bytes(signal),
        media_type="audio/wav",
        headers={
            SIGNAL_ID_HEADER: signal.signal_id,
            SIGNAL_TIMING_HEADER: timing,
            "Content-Disposition": f'attachment; filename="{signal.signal_id}.wav"',
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )


@router.get("/measurement/signal", response_model=SignalInfo, tags=["signal"])
async def measurement_signal(signal: SignalDep) -> dict[str, Any]:
    """The signal's id and the timing of its parts (same query as /v1/measurement/audio)."""
    return signal.describe()


@router.post("/jobs", response_model=JobCreated, status_code=201, tags=["jobs"])
async def create_job(services: ServicesDep, body: JobCreate) -> dict[str, str]:
    """Create a measurement job with the room map and free-form metadata."""
    return await service.create_job(services, body)


@router.get("/jobs/{job_id}", response_model=JobView, tags=["jobs"])
async def get_job(services: ServicesDep, job_id: str) -> dict[str, Any]:
    """The job: map, meta, signal, uploads, announced recordings and the last analysis."""
    return service.get_job(services, job_id)


@router.post("/jobs/{job_id}/uploads/{upload_name:path}", response_model=UploadInfo, status_code=201, tags=["jobs"])
async def upload_recording(services: ServicesDep, request: Request, job_id: str, upload_name: str) -> dict[str, Any]:
    """Store a recording (raw WAV/FLAC body or multipart field `file`); the same name again replaces it."""
    await receive_upload(request, services.jobs, job_id, upload_name, services.settings.max_upload_bytes)
    info = service.get_upload(services, job_id, upload_name)
    service.record_upload(services, job_id, info)
    return info


@router.get("/jobs/{job_id}/uploads/{upload_name:path}", response_model=UploadInfo, tags=["jobs"])
async def get_upload(services: ServicesDep, job_id: str, upload_name: str) -> dict[str, Any]:
    """An upload's metadata once it is stored (404 before)."""
    return service.get_upload(services, job_id, upload_name)


@router.put("/jobs/{job_id}/recordings/{upload_name:path}", response_model=Announcement, tags=["jobs"])
async def announce_recording(
    services: ServicesDep, job_id: str, upload_name: str, body: RecordingAnnouncement
) -> dict[str, Any]:
    """Say which speaker and microphone slots an upload belongs to (idempotent; before or after the upload)."""
    return await service.announce_recording(services, job_id, upload_name, body)


@router.post("/jobs/{job_id}/analyze", response_model=AnalysisResults, tags=["analysis"])
async def analyze(services: ServicesDep, job_id: str) -> dict[str, Any]:
    """Analyse every upload of the job and answer (and store) the results."""
    return await service.analyze_job(services, job_id)
