"""Use cases of the measurement service, shared by the HTTP routes and the gateway events."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sonalyze_measurement.analysis.audio_generator import DEFAULT_SAMPLE_RATE_HZ, resolve_params
from sonalyze_measurement.analysis.io import MAX_SAMPLE_RATE_HZ
from sonalyze_measurement.analysis.metrics import GENERATED_SOURCE, METRIC_FIELDS, AnalysisTask
from sonalyze_measurement.analysis_pool import AnalysisPool
from sonalyze_measurement.app_results import app_results
from sonalyze_measurement.reference_store import ReferenceStore, StoredSignal
from sonalyze_measurement.schemas import (
    AnalysisRun,
    AnalysisState,
    AnalysisSummary,
    Announcement,
    JobCreate,
    JobCreated,
    JobRecord,
    JobView,
    RecordingAnnouncement,
    RecordingError,
    RecordingResult,
    SessionRecord,
    SessionRegistration,
    SignalQuery,
    StoredAnnouncement,
    UploadInfo,
)
from sonalyze_measurement.sessions import SessionStore
from sonalyze_measurement.settings import Settings
from sonalyze_measurement.storage import JobStore, check_upload_name, now_iso
from sonalyze_protocol.errors import BadRequest, NotFound
from sonalyze_protocol.json_rule import jsonable
from sonalyze_protocol.logs import device_id_var
from sonalyze_protocol.storage_client import StorageRecorder

logger = logging.getLogger("sonalyze.measurement.service")


@dataclass
class Services:
    """What the routes and handlers work with; lives in ``app.state.services``."""

    settings: Settings
    jobs: JobStore
    references: ReferenceStore
    pool: AnalysisPool
    sessions: SessionStore
    recorder: StorageRecorder | None = None


def _one_of(name: str, value: float | None, alias: str, alias_value: float | None) -> float | None:
    if value is not None and alias_value is not None and value != alias_value:
        raise BadRequest(f"{name} and {alias} disagree ({value:g} vs {alias_value:g}): give one of them")
    return value if value is not None else alias_value


async def resolve_signal(services: Services, query: SignalQuery) -> StoredSignal:
    """The signal a query names: a registered session's signal, else the one its parameters make.

    With ``session_id`` the session's signal is served whatever else the query says: its recordings
    are analysed against that signal, so a phone must play exactly it.
    """
    if query.session_id is not None:
        session = services.sessions.get(query.session_id)
        stored = services.references.get(session.signal_id)
        if stored is None:
            raise NotFound(f"the signal of session {query.session_id!r} is no longer stored")
        return stored
    params = resolve_params(
        query.sample_rate,
        query.duration_s,
        _one_of("f_start_hz", query.f_start_hz, "sweep_f_start", query.sweep_f_start),
        _one_of("f_end_hz", query.f_end_hz, "sweep_f_end", query.sweep_f_end),
    )
    return await services.references.ensure(params)


async def signal_info(services: Services, query: SignalQuery) -> dict[str, Any]:
    """The JSON sibling of ``/v1/measurement/audio`` for the same query, with the body's hash."""
    stored = await resolve_signal(services, query)
    audio_hash = await asyncio.to_thread(services.references.audio_hash, stored, query.format)
    return {**stored.describe(query.format), "audio_hash": audio_hash, "session_id": query.session_id}


def register_session(services: Services, session_id: str, body: SessionRegistration) -> SessionRecord:
    """Remember which job and signal a lobby session uses (idempotent; a new PUT replaces)."""
    services.jobs.job_dir(body.job_id)
    if services.references.get(body.signal_id) is None:
        raise BadRequest(f"unknown signal_id {body.signal_id!r}: get it from /v1/measurement/signal")
    record = services.sessions.put(session_id, body.job_id, body.signal_id)
    logger.info("session %s registered: job %s, signal %s", session_id, body.job_id, body.signal_id)
    return record


async def create_job(services: Services, body: JobCreate) -> JobCreated:
    if body.signal_id is not None and services.references.get(body.signal_id) is None:
        raise BadRequest(f"unknown signal_id {body.signal_id!r}: get it from /v1/measurement/signal")
    job = await services.jobs.create_job(body.map, body.meta, body.signal_id)
    logger.info("job %s created", job.job_id)
    return JobCreated(job_id=job.job_id)


async def get_job(services: Services, job_id: str) -> JobView:
    """The job with its uploads, announcements and last analysis (file reads: in a worker thread)."""
    return await asyncio.to_thread(_job_view, services.jobs, job_id)


def _job_view(jobs: JobStore, job_id: str) -> JobView:
    job = jobs.load_job(job_id)
    uploads = _stored_uploads(jobs, job_id)
    recordings = [
        Announcement(upload_name=name, **value.model_dump()) for name, value in sorted(jobs.recordings(job_id).items())
    ]
    return JobView(**job.model_dump(), uploads=uploads, recordings=recordings, analysis=jobs.load_analysis(job_id))


def _stored_uploads(jobs: JobStore, job_id: str) -> list[UploadInfo]:
    """Every stored upload's metadata, by name (file reads: call it off the event loop)."""
    return [info for name in jobs.upload_names(job_id) if (info := jobs.upload_info(job_id, name)) is not None]


async def get_upload(services: Services, job_id: str, name: str) -> UploadInfo:
    """A stored upload's metadata; `NotFound` before it is stored."""
    services.jobs.job_dir(job_id)
    info = await asyncio.to_thread(services.jobs.upload_info, job_id, check_upload_name(name))
    if info is None:
        raise NotFound(f"upload {name!r} of job {job_id} is not stored")
    return info


async def announce_recording(services: Services, job_id: str, name: str, body: RecordingAnnouncement) -> Announcement:
    check_upload_name(name)
    if body.signal_id is not None and services.references.get(body.signal_id) is None:
        raise BadRequest(f"unknown signal_id {body.signal_id!r}")
    stored = await services.jobs.announce(job_id, name, body)
    if (recorder := services.recorder) is not None:
        recorder.in_background(
            recorder.measurement(
                job_id,
                name,
                speaker_slot_id=stored.speaker_slot_id,
                mic_slot_id=stored.mic_slot_id,
                device_id=stored.device_id,
                signal_id=stored.signal_id,
            )
        )
    return Announcement(upload_name=name, **stored.model_dump())


def record_upload(services: Services, job_id: str, info: UploadInfo) -> None:
    """Queue the stored upload for the storage service (best effort; storage merges it with the announcement)."""
    recorder = services.recorder
    if recorder is None:
        return
    lobby_id = services.jobs.load_job(job_id).meta.get("lobby_id")
    recorder.in_background(
        recorder.measurement(
            job_id,
            info.name,
            lobby_id=str(lobby_id) if lobby_id else None,
            device_id=info.device_id or device_id_var.get(),
            sample_rate_hz=info.sample_rate_hz,
            duration_s=info.duration_s,
            size_bytes=info.size_bytes,
            recorded_at=datetime.fromisoformat(info.uploaded_at),
        )
    )


def _record_analysis(services: Services, job_id: str, analysis_run: str, results: list[RecordingResult]) -> None:
    recorder = services.recorder
    if recorder is None:
        return

    async def write() -> bool:
        ok = True
        for item in results:
            name = item.upload_name
            speaker, mic = item.speaker_slot_id, item.mic_slot_id
            # the parent exists before its output
            ok = await recorder.measurement(job_id, name, speaker_slot_id=speaker, mic_slot_id=mic) and ok
            ok = (
                await recorder.analysis_output(
                    job_id,
                    name,
                    analysis_run,
                    status=item.status,
                    error=error_text(item.error),
                    metrics={"broadband": item.broadband, "bands": item.bands},
                    quality=item.quality,
                    speaker_slot_id=speaker,
                    mic_slot_id=mic,
                )
                and ok
            )
        return ok

    recorder.in_background(write())


def error_text(error: RecordingError | None) -> str | None:
    """A result's error as storage keeps it: ``"code: message"`` text (results carry it as an object)."""
    return None if error is None else f"{error.code}: {error.message}"


async def analyze_job(services: Services, job_id: str) -> tuple[list[RecordingResult], AnalysisSummary]:
    """Analyse every stored upload of the job (in the process pool) and save the results with it."""
    jobs = services.jobs
    job = jobs.load_job(job_id)
    async with jobs.analysis_lock(job_id):
        started_at = now_iso()
        await jobs.save_analysis(job_id, AnalysisState(state="running", started_at=started_at))
        try:
            return await _analyze_locked(services, job_id, job, started_at)
        except asyncio.CancelledError:  # the caller left (its workers were stopped) or the service stops
            reason = "stopped: the caller left before the analysis ended"
            # shielded: cancelled again, the write still completes in its thread
            await asyncio.shield(jobs.save_analysis(job_id, _failed_state(started_at, reason)))
            raise
        except Exception as exc:
            # the job must not stay "running" forever; the error itself is raised to the caller
            await jobs.save_analysis(job_id, _failed_state(started_at, str(exc)))
            raise


def _failed_state(started_at: str, error: str) -> AnalysisState:
    return AnalysisState(state="failed", started_at=started_at, finished_at=now_iso(), error=error)


async def _analyze_locked(
    services: Services, job_id: str, job: JobRecord, started_at: str
) -> tuple[list[RecordingResult], AnalysisSummary]:
    jobs = services.jobs
    announcements = jobs.recordings(job_id)
    tasks: list[AnalysisTask] = []
    failed: list[dict[str, Any]] = []
    for info in await asyncio.to_thread(_stored_uploads, jobs, job_id):
        name = info.name
        announced = announcements.get(name)
        signal, problem = await _signal_for(services, job, announced, info.sample_rate_hz)
        if signal is None:
            failed.append(_failed_item(name, announced, problem))
            continue
        tasks.append(_task(services, job_id, name, announced, signal))
    items = sorted(await services.pool.run(tasks) + failed, key=lambda item: item["upload_name"])
    results = [_result(item) for item in items]
    summary = summarize(results)
    analysis = AnalysisState(
        state="done", started_at=started_at, finished_at=now_iso(), results=results, summary=summary
    )
    await jobs.save_analysis(job_id, analysis)
    _record_analysis(services, job_id, started_at, results)
    logger.info("job %s analysed: %d ok, %d failed", job_id, summary.n_ok, summary.n_failed)
    return results, summary


def _result(item: dict[str, Any]) -> RecordingResult:
    """A result item of the pool (JSON-safe), typed, with its ``app_results``."""
    item = jsonable(item)
    return RecordingResult.model_validate({**item, "app_results": item.get("app_results") or app_results(item)})


def _task(
    services: Services,
    job_id: str,
    name: str,
    announced: StoredAnnouncement | None,
    signal: StoredSignal | None,
    **source: Any,
) -> AnalysisTask:
    """One recording for the pool; ``signal`` is None for sources that do not use our signal."""
    return AnalysisTask(
        job_id=job_id,
        upload_name=name,
        recording_path=str(services.jobs.upload_path(job_id, name)),
        reference_path=str(signal.wav_path) if signal else "",
        reference_timing=signal.timing if signal else {},
        signal_id=signal.signal_id if signal else None,
        speaker_slot_id=announced.speaker_slot_id if announced else None,
        mic_slot_id=announced.mic_slot_id if announced else None,
        debug_audio_dir=(
            str(services.settings.measurement_debug_audio_dir) if services.settings.measurement_debug_audio else None
        ),
        **source,
    )


async def run_analysis(services: Services, body: AnalysisRun) -> dict[str, Any]:
    """``analysis.run``: ``results`` is always an object.

    With ``recording_upload``: that recording's result in the app's shape. Without: the whole job,
    ``results.recordings`` being the list ``POST /v1/jobs/{job_id}/analyze`` answers as ``results``.
    """
    if body.recording_upload is None:
        if body.source != GENERATED_SOURCE:
            raise BadRequest(f"source {body.source!r} needs recording_upload: the upload to analyse")
        results, summary = await analyze_job(services, body.job_id)
        recordings = [result.model_dump(mode="json") for result in results]
        summary_json = summary.model_dump(mode="json")
        return {
            "job_id": body.job_id,
            "results": {"recordings": recordings, "summary": summary_json},
            "summary": summary_json,
        }
    item = await analyze_upload(services, body)
    return {
        "job_id": body.job_id,
        "recording_upload": body.recording_upload,
        "source": body.source,
        "results": item.app_results,
    }


async def analyze_upload(services: Services, body: AnalysisRun) -> RecordingResult:
    """One upload of the job, analysed as ``body.source`` says; its result with ``app_results``."""
    jobs = services.jobs
    job_id = body.job_id
    job = jobs.load_job(job_id)
    name = check_upload_name(body.recording_upload or "")
    info = await asyncio.to_thread(jobs.upload_info, job_id, name)
    if info is None:
        raise NotFound(f"upload {name!r} of job {job_id} is not stored")
    announced = jobs.recordings(job_id).get(name)
    if body.source != GENERATED_SOURCE:
        source: dict[str, Any] = {"source": body.source}
        if body.source == "sweep_deconvolution":
            source.update(await asyncio.to_thread(_sweep_source, services, job_id, body))
        (item,) = await services.pool.run([_task(services, job_id, name, announced, None, **source)])
        return _result(item)
    signal, problem = await _signal_for(services, job, announced, info.sample_rate_hz)
    if body.audio_hash and not ((announced and announced.signal_id) or job.signal_id):
        # nobody said which signal was played: the hash says it exactly
        played = await asyncio.to_thread(services.references.find_by_hash, body.audio_hash.lower())
        if played is not None:  # remembered, so the job's analysis uses it too
            signal = played
            slots = announced.model_dump(include=set(RecordingAnnouncement.model_fields)) if announced else {}
            announcement = RecordingAnnouncement(**{**slots, "signal_id": played.signal_id})
            announced = await jobs.announce(job_id, name, announcement)
    if signal is None:
        return _result(_failed_item(name, announced, problem))
    await _check_signal_hash(services, signal, body.audio_hash)
    async with jobs.analysis_lock(job_id):
        fresh = _fresh_stored_result(services, job_id, info, signal.signal_id)
        if fresh is not None:
            return fresh
        (item,) = await services.pool.run([_task(services, job_id, name, announced, signal)])
    return _result(item)


def _sweep_source(services: Services, job_id: str, body: AnalysisRun) -> dict[str, Any]:
    """The sweep upload (and its range, when given) of a ``sweep_deconvolution`` request."""
    if not body.sweep_upload:
        raise BadRequest(
            "source 'sweep_deconvolution' needs sweep_upload: the name of the uploaded sweep that was played"
        )
    sweep_name = check_upload_name(body.sweep_upload)
    if services.jobs.upload_info(job_id, sweep_name) is None:
        raise NotFound(f"sweep upload {sweep_name!r} of job {job_id} is not stored: upload the played sweep first")
    sweep_path = services.jobs.upload_path(job_id, sweep_name)
    if body.audio_hash and hashlib.sha256(sweep_path.read_bytes()).hexdigest() != body.audio_hash.lower():
        raise BadRequest(
            f"audio_hash does not match the sweep upload {sweep_name!r}: the played sweep was another file"
        )
    if (body.sweep_f_start is None) != (body.sweep_f_end is None):
        raise BadRequest("give both sweep_f_start and sweep_f_end, or neither (then the range is estimated)")
    sweep_range = (body.sweep_f_start, body.sweep_f_end) if body.sweep_f_start is not None else None
    return {"sweep_path": str(sweep_path), "sweep_range_hz": sweep_range}


async def _check_signal_hash(services: Services, signal: StoredSignal, audio_hash: str | None) -> None:
    """An ``audio_hash`` must be the hash of the signal's WAV or FLAC body, else the phone played other audio."""
    if not audio_hash:
        return
    for audio_format in ("wav", "flac"):
        if await asyncio.to_thread(services.references.audio_hash, signal, audio_format) == audio_hash.lower():
            return
    raise BadRequest(
        f"audio_hash {audio_hash[:16]}... is not the hash of signal {signal.signal_id}, which this recording is "
        "analysed against: the speaker played other audio (download it again from /v1/measurement/audio)"
    )


def _fresh_stored_result(services: Services, job_id: str, info: UploadInfo, signal_id: str) -> RecordingResult | None:
    """The upload's result of the job's last analysis when that analysis began after the upload, else None."""
    analysis = services.jobs.load_analysis(job_id)
    if analysis.state != "done" or (analysis.started_at or "") < info.uploaded_at:
        return None
    for result in analysis.results or []:
        if result.upload_name == info.name and result.quality.get("signal_id") == signal_id:
            return result
    return None


async def _signal_for(
    services: Services, job: JobRecord, announced: StoredAnnouncement | None, recording_rate_hz: int
) -> tuple[StoredSignal | None, str]:
    """The signal a recording was made of: announced, else the job's, else the default signal.

    Without any announcement the default signal at the recording's own rate is assumed (phones
    download the signal at the rate they play and record at), or 48 kHz when that rate is unusual.
    """
    signal_id = (announced.signal_id if announced else None) or job.signal_id
    if signal_id:
        stored = services.references.get(signal_id)
        return (stored, "") if stored is not None else (None, f"signal {signal_id} is not in the reference store")
    rate_hz = recording_rate_hz if recording_rate_hz in (44100, 48000, 96000) else DEFAULT_SAMPLE_RATE_HZ
    rate_hz = min(rate_hz, MAX_SAMPLE_RATE_HZ)
    return await services.references.ensure(resolve_params(rate_hz)), ""


def _failed_item(name: str, announced: StoredAnnouncement | None, message: str) -> dict[str, Any]:
    return {
        "upload_name": name,
        "speaker_slot_id": announced.speaker_slot_id if announced else None,
        "mic_slot_id": announced.mic_slot_id if announced else None,
        "status": "failed",
        "error": {"code": "unknown_signal", "message": message},
        "quality": {},
        "broadband": None,
        "bands": None,
        "plots": None,
    }


def summarize(results: list[RecordingResult]) -> AnalysisSummary:
    """Counts, and the mean of every value over the recordings that have it (null when none has)."""
    ok = [item for item in results if item.status == "ok"]

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    broadband_fields = (*METRIC_FIELDS, "sti")
    broadband = {name: mean([(item.broadband or {}).get(name) for item in ok]) for name in broadband_fields}
    band_keys = list(ok[0].bands or {}) if ok else []
    bands = {
        band: {name: mean([(item.bands or {}).get(band, {}).get(name) for item in ok]) for name in METRIC_FIELDS}
        for band in band_keys
    }
    return AnalysisSummary(
        n_recordings=len(results),
        n_ok=len(ok),
        n_failed=len(results) - len(ok),
        failed=[item.upload_name for item in results if item.status != "ok"],
        broadband_mean=broadband,
        bands_mean=bands,
    )
