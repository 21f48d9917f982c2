"""Job files under ``MEASUREMENT_DATA_DIR/jobs/{job_id}/``.

    job.json          map, meta, signal id, creation time
    recordings.json   upload name -> slots announced by the lobby
    analysis.json     state and results of the last analysis
    uploads/{name}    the recordings, as uploaded
    tmp/              uploads in flight; renamed into uploads/ only once complete and valid

Every write is atomic (temporary file, then rename) and synced to disk in a worker thread, off the event
loop, so a crash or a dropped connection never leaves a partial file where a reader looks. Read-modify-write
of a job's JSON runs under that job's lock; a lock lives only while someone holds or awaits it. The files
are read and written as the typed models of `schemas` (`JobRecord`, `StoredAnnouncement`, `UploadInfo`,
`AnalysisState`).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from weakref import WeakValueDictionary

from sonalyze_measurement.analysis.io import read_info
from sonalyze_measurement.files import read_json, write_json
from sonalyze_measurement.schemas import AnalysisState, JobRecord, RecordingAnnouncement, StoredAnnouncement, UploadInfo
from sonalyze_protocol.errors import BadRequest, NotFound

JOB_ID_PATTERN: Final = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_upload_name(name: str) -> str:
    """1-100 of ``[A-Za-z0-9._-]``, not only dots; raises `BadRequest`."""
    if not UPLOAD_NAME_PATTERN.fullmatch(name) or set(name) == {"."}:
        raise BadRequest("upload name must be 1-100 characters of letters, digits, '.', '_' and '-', and not only dots")
    return name


def _lock_for(locks: WeakValueDictionary[str, asyncio.Lock], job_id: str) -> asyncio.Lock:
    """The job's lock; a new one once nobody holds or awaits the old (the dictionary keeps no lock alive)."""
    lock = locks.get(job_id)
    if lock is None:
        lock = asyncio.Lock()
        locks[job_id] = lock
    return lock


class JobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self._analysis_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()

    def lock(self, job_id: str) -> asyncio.Lock:
        """Guards the job's JSON files (short critical sections)."""
        return _lock_for(self._locks, job_id)

    def analysis_lock(self, job_id: str) -> asyncio.Lock:
        """One analysis of a job at a time; a second request waits and then analyses afresh."""
        return _lock_for(self._analysis_locks, job_id)

    def held_locks(self) -> int:
        """How many job locks exist now (held or awaited): what a finished job leaves behind is none."""
        return len(self._locks) + len(self._analysis_locks)

    def job_dir(self, job_id: str) -> Path:
        """The job's directory; `NotFound` for an unknown or malformed id."""
        directory = self.root / job_id
        if not JOB_ID_PATTERN.fullmatch(job_id) or not (directory / "job.json").is_file():
            raise NotFound(f"job {job_id!r} not found")
        return directory

    async def create_job(self, map_: dict[str, Any], meta: dict[str, Any], signal_id: str | None) -> JobRecord:
        job = JobRecord(job_id=uuid.uuid4().hex, created_at=now_iso(), map=map_, meta=meta, signal_id=signal_id)
        await asyncio.to_thread(self._create, job)
        return job

    def _create(self, job: JobRecord) -> None:
        directory = self.root / job.job_id
        (directory / "uploads").mkdir(parents=True)
        (directory / "tmp").mkdir()
        write_json(directory / "job.json", job.model_dump(mode="json"))

    def load_job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(read_json(self.job_dir(job_id) / "job.json"))

    def recordings(self, job_id: str) -> dict[str, StoredAnnouncement]:
        """Upload name -> its announcement."""
        stored = read_json(self.job_dir(job_id) / "recordings.json", {})
        return {name: StoredAnnouncement.model_validate(value) for name, value in stored.items()}

    async def announce(self, job_id: str, upload_name: str, announcement: RecordingAnnouncement) -> StoredAnnouncement:
        """Record which slots an upload belongs to; the same announcement again changes nothing."""
        directory = self.job_dir(job_id)
        async with self.lock(job_id):
            recordings = read_json(directory / "recordings.json", {})
            fields = announcement.model_dump(include=set(RecordingAnnouncement.model_fields))
            current = recordings.get(upload_name)
            if current is not None and all(current.get(k) == v for k, v in fields.items()):
                return StoredAnnouncement.model_validate(current)
            stored = StoredAnnouncement(**fields, announced_at=now_iso())
            recordings[upload_name] = stored.model_dump(mode="json")
            await asyncio.to_thread(write_json, directory / "recordings.json", recordings)
            return stored

    def new_temp_path(self, job_id: str) -> Path:
        directory = self.job_dir(job_id) / "tmp"
        directory.mkdir(exist_ok=True)
        return directory / f"{uuid.uuid4().hex}.part"

    def commit_upload(self, job_id: str, name: str, temp_path: Path) -> None:
        """Make a complete, validated upload visible under its name (replacing an older one)."""
        target = self.job_dir(job_id) / "uploads" / name
        os.replace(temp_path, target)

    def upload_path(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / "uploads" / check_upload_name(name)

    def upload_names(self, job_id: str) -> list[str]:
        uploads = self.job_dir(job_id) / "uploads"
        return sorted(p.name for p in uploads.iterdir() if p.is_file() and UPLOAD_NAME_PATTERN.fullmatch(p.name))

    def upload_info(self, job_id: str, name: str) -> UploadInfo | None:
        """Metadata of a stored upload (slots when announced), or None when it is not stored."""
        path = self.upload_path(job_id, name)
        try:
            stat = path.stat()
            info = read_info(path)
        except (FileNotFoundError, RuntimeError):
            return None
        slots = self.recordings(job_id).get(name) or RecordingAnnouncement()
        return UploadInfo(
            name=name,
            size_bytes=stat.st_size,
            format=info.format,
            subtype=info.subtype,
            sample_rate_hz=info.sample_rate_hz,
            n_channels=info.n_channels,
            duration_s=round(info.duration_s, 6),
            speaker_slot_id=slots.speaker_slot_id,
            mic_slot_id=slots.mic_slot_id,
            device_id=slots.device_id,
            signal_id=slots.signal_id,
            uploaded_at=datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="milliseconds"),
        )

    def load_analysis(self, job_id: str) -> AnalysisState:
        return AnalysisState.model_validate(read_json(self.job_dir(job_id) / "analysis.json", {"state": "not_started"}))

    async def save_analysis(self, job_id: str, analysis: AnalysisState) -> None:
        path = self.job_dir(job_id) / "analysis.json"
        await asyncio.to_thread(write_json, path, analysis.model_dump(mode="json"))
