"""Use cases of the measurement service, shared by the HTTP routes and the gateway events."""

from __future__ import annotations

import asyncio
import logging
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sonalyze_protocol.errors import BadRequest, NotFound
from sonalyze_protocol.logs import device_id_var
from sonalyze_protocol.storage_client import StorageRecorder

from sonalyze_measurement.analysis.audio_generator import DEFAULT_SAMPLE_RATE_HZ, resolve_params
from sonalyze_measurement.analysis.io import MAX_SAMPLE_RATE_HZ
from sonalyze_measurement.analysis.metrics import METRIC_FIELDS, AnalysisTask, json_safe
from sonalyze_measurement.analysis_pool import AnalysisPool
from sonalyze_measurement.models import JobCreate, RecordingAnnouncement
from sonalyze_measurement.reference_store import ReferenceStore, StoredSignal
from sonalyze_measurement.settings import Settings
from sonalyze_measurement.storage import JobStore, check_upload_name, now_iso

logger = logging.getLogger("sonalyze.measurement.service")


@dataclass
class Services:
    """What the routes and handlers work with; lives in ``app.state.services``."""

    settings: Settings
    jobs: JobStore
    references: ReferenceStore
    pool: AnalysisPool
    recorder: StorageRecorder | None = None


async def create_job(services: Services, body: JobCreate) -> dict[str, str]:
    if body.signal_id is not None and services.references.get(body.signal_id) is None:
        raise BadRequest(f"unknown signal_id {body.signal_id!r}: get it from /v1/measurement/signal")
    job = services.jobs.create_job(body.map, body.meta, body.signal_id)
    logger.info("job %s created", job["job_id"])
    return {"job_id": job["job_id"]}


def get_job(services: Services, job_id: str) -> dict[str, Any]:
    jobs = services.jobs
    job = jobs.load_job(job_id)
    uploads = [info for name in jobs.upload_names(job_id) if (info := jobs.upload_info(job_id, name)) is not None]
    recordings = [{"upload_name": name, **value} for name, value in sorted(jobs.recordings(job_id).items())]
    return {**job, "uploads": uploads, "recordings": recordings, "analysis": jobs.load_analysis(job_id)}


def get_upload(services: Services, job_id: str, name: str) -> dict[str, Any]:
    services.jobs.job_dir(job_id)
    info = services.jobs.upload_info(job_id, check_upload_name(name))
    if info is None:
        raise NotFound(f"upload {name!r} of job {job_id} is not stored")
    return info


async def announce_recording(
    services: Services, job_id: str, name: str, body: RecordingAnnouncement
) -> dict[str, Any]:
    check_upload_name(name)
    if body.signal_id is not None and services.references.get(body.signal_id) is None:
        raise BadRequest(f"unknown signal_id {body.signal_id!r}")
    stored = await services.jobs.announce(job_id, name, body.model_dump())
    if (recorder := services.recorder) is not None:
        recorder.in_background(recorder.measurement(job_id, name, **_slots(stored), signal_id=stored.get("signal_id")))
    return {"upload_name": name, **stored}


def _slots(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item.get(key) for key in ("speaker_slot_id", "mic_slot_id", "device_id")}


def record_upload(services: Services, job_id: str, info: dict[str, Any]) -> None:
    """Queue the stored upload for the storage service (best effort; storage merges it with the announcement)."""
    recorder = services.recorder
    if recorder is None:
        return
    lobby_id = (services.jobs.load_job(job_id).get("meta") or {}).get("lobby_id")
    recorder.in_background(
        recorder.measurement(
            job_id,
            info["name"],
            lobby_id=str(lobby_id) if lobby_id else None,
            device_id=info.get("device_id") or device_id_var.get(),
            sample_rate_hz=info["sample_rate_hz"],
            duration_s=info["duration_s"],
            size_bytes=info["size_bytes"],
            recorded_at=datetime.fromisoformat(info["uploaded_at"]),
        )
    )


def _record_analysis(services: Services, job_id: str, analysis_run: str, results: list[dict[str, Any]]) -> None:
    recorder = services.recorder
    if recorder is None:
        return

    async def write() -> bool:
        ok = True
        for item in results:
            name = item["upload_name"]
            slots = {"speaker_slot_id": item.get("speaker_slot_id"), "mic_slot_id": item.get("mic_slot_id")}
            ok = await recorder.measurement(job_id, name, **slots) and ok  # the parent exists before its output
            ok = await recorder.analysis_output(
                job_id,
                name,
                analysis_run,
                status=item.get("status", "ok"),
                error=error_text(item.get("error")),
                metrics={"broadband": item.get("broadband"), "bands": item.get("bands")},
                quality=item.get("quality"),
                **slots,
            ) and ok
        return ok

    recorder.in_background(write())


def error_text(error: Any) -> str | None:
    """A result's error as storage keeps it: ``"code: message"`` text (results carry it as an object)."""
    if error is None or isinstance(error, str):
        return error
    if isinstance(error, dict):
        return f"{error.get('code', 'analysis_failed')}: {error.get('message', '')}"
    return str(error)


async def analyze_job(services: Services, job_id: str) -> dict[str, Any]:
    """Analyse every stored upload of the job (in the process pool) and save the results with it."""
    jobs = services.jobs
    job = jobs.load_job(job_id)
    async with jobs.analysis_lock(job_id):
        started_at = now_iso()
        jobs.save_analysis(job_id, {"state": "running", "started_at": started_at})
        try:
            return await _analyze_locked(services, job_id, job, started_at)
        except Exception as exc:
            # the job must not stay "running" forever; the error itself is raised to the caller
            jobs.save_analysis(
                job_id, {"state": "failed", "started_at": started_at, "finished_at": now_iso(), "error": str(exc)}
            )
            raise


async def _analyze_locked(services: Services, job_id: str, job: dict[str, Any], started_at: str) -> dict[str, Any]:
    jobs = services.jobs
    announcements = jobs.recordings(job_id)
    tasks: list[AnalysisTask] = []
    failed: list[dict[str, Any]] = []
    for name in jobs.upload_names(job_id):
        info = jobs.upload_info(job_id, name)
        if info is None:
            continue
        announced = announcements.get(name, {})
        signal, problem = await _signal_for(services, job, announced, info["sample_rate_hz"])
        if signal is None:
            failed.append(_failed_item(name, announced, problem))
            continue
        tasks.append(
            AnalysisTask(
                job_id=job_id,
                upload_name=name,
                recording_path=str(jobs.upload_path(job_id, name)),
                reference_path=str(signal.wav_path),
                reference_timing=signal.timing,
                signal_id=signal.signal_id,
                speaker_slot_id=announced.get("speaker_slot_id"),
                mic_slot_id=announced.get("mic_slot_id"),
                debug_audio_dir=(
                    str(services.settings.measurement_debug_audio_dir)
                    if services.settings.measurement_debug_audio
                    else None
                ),
            )
        )
    results = await services.pool.run(tasks)
    results = sorted(results + failed, key=lambda item: item["upload_name"])
    summary = summarize(results)
    analysis = json_safe(
        {"state": "done", "started_at": started_at, "finished_at": now_iso(), "results": results, "summary": summary}
    )
    await asyncio.to_thread(jobs.save_analysis, job_id, analysis)
    _record_analysis(services, job_id, started_at, analysis["results"])
    logger.info("job %s analysed: %d ok, %d failed", job_id, summary["n_ok"], summary["n_failed"])
    return {"job_id": job_id, "results": analysis["results"], "summary": analysis["summary"]}


async def _signal_for(
    services: Services, job: dict[str, Any], announced: dict[str, Any], recording_rate_hz: int
) -> tuple[StoredSignal | None, str]:
    """The signal a recording was made of: announced, else the job's, else the default signal.

    Without any announcement the default signal at the recording's own rate is assumed (phones
    download the signal at the rate they play and record at), or 48 kHz when that rate is unusual.
    """
    signal_id = announced.get("signal_id") or job.get("signal_id")
    if signal_id:
        stored = services.references.get(signal_id)
        return (stored, "") if stored is not None else (None, f"signal {signal_id} is not in the reference store")
    rate_hz = recording_rate_hz if recording_rate_hz in (44100, 48000, 96000) else DEFAULT_SAMPLE_RATE_HZ
    rate_hz = min(rate_hz, MAX_SAMPLE_RATE_HZ)
    return await services.references.ensure(resolve_params(rate_hz)), ""


def _failed_item(name: str, announced: dict[str, Any], message: str) -> dict[str, Any]:
    return {
        "upload_name": name,
        "speaker_slot_id": announced.get("speaker_slot_id"),
        "mic_slot_id": announced.get("mic_slot_id"),
        "status": "failed",
        "error": {"code": "unknown_signal", "message": message},
        "quality": {},
        "broadband": None,
        "bands": None,
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, and the mean of every value over the recordings that have it (null when none has)."""
    ok = [item for item in results if item["status"] == "ok"]

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    broadband_fields = (*METRIC_FIELDS, "sti")
    broadband = {name: mean([item["broadband"].get(name) for item in ok]) for name in broadband_fields}
    band_keys = list(ok[0]["bands"]) if ok else []
    bands = {
        band: {name: mean([item["bands"][band].get(name) for item in ok]) for name in METRIC_FIELDS}
        for band in band_keys
    }
    return {
        "n_recordings": len(results),
        "n_ok": len(ok),
        "n_failed": len(results) - len(ok),
        "failed": [item["upload_name"] for item in results if item["status"] != "ok"],
        "broadband_mean": broadband,
        "bands_mean": bands,
    }
