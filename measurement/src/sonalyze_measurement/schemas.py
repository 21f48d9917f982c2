"""Pydantic models: request and response bodies of the HTTP API and the gateway events, and the job files.

A job on disk (`storage.JobStore`) is a `JobRecord` (``job.json``), a `StoredAnnouncement` per upload name
(``recordings.json``), an `UploadInfo` per stored upload and an `AnalysisState` (``analysis.json``) whose
results are `RecordingResult` items; `service` works with these, never with bare dicts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sonalyze_protocol.ids import DeviceId


class JobCreate(BaseModel):
    """``POST /v1/jobs`` and ``measurement.create_job``."""

    model_config = ConfigDict(extra="ignore")
    map: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    signal_id: str | None = Field(default=None, description="The signal the job's speakers play, when known.")


class JobCreated(BaseModel):
    job_id: str


class JobRecord(BaseModel):
    """``job.json``: what a job is, fixed when it is created."""

    job_id: str
    created_at: str
    map: dict[str, Any]
    meta: dict[str, Any]
    signal_id: str | None = None


class JobRef(BaseModel):
    """``measurement.get_job``."""

    model_config = ConfigDict(extra="ignore")
    job_id: str = Field(min_length=1, max_length=100)


AnalysisSource = Literal["sweep_deconvolution_generated", "impulse_response", "sweep_deconvolution"]


class AnalysisRun(JobRef):
    """``analysis.run``: the whole job, or one upload (``recording_upload``) in the app's shape."""

    source: AnalysisSource = Field(
        default="sweep_deconvolution_generated",
        description="What the upload is: a recording of our signal, an impulse response, or a recording of "
        "the user's own sweep (then `sweep_upload` names the uploaded sweep)",
    )
    recording_upload: str | None = Field(default=None, max_length=100)
    audio_hash: str | None = Field(
        default=None,
        max_length=128,
        description="SHA-256 (hex) of the audio the speaker played; checked against the signal (or sweep upload)",
    )
    sweep_upload: str | None = Field(default=None, max_length=100, description="sweep_deconvolution: the played sweep")
    sweep_f_start: float | None = Field(default=None, gt=0, description="sweep_deconvolution: the sweep's start (Hz)")
    sweep_f_end: float | None = Field(default=None, gt=0, description="sweep_deconvolution: the sweep's end (Hz)")


class RecordingAnnouncement(BaseModel):
    """``PUT /v1/jobs/{job_id}/recordings/{upload_name}``: which slots an upload belongs to."""

    model_config = ConfigDict(extra="ignore")
    speaker_slot_id: str | None = Field(default=None, max_length=200)
    mic_slot_id: str | None = Field(default=None, max_length=200)
    device_id: DeviceId | None = None
    signal_id: str | None = Field(default=None, max_length=100)


class StoredAnnouncement(RecordingAnnouncement):
    """One entry of ``recordings.json`` (keyed by upload name): the slots as announced, and when."""

    announced_at: str


class Announcement(RecordingAnnouncement):
    upload_name: str
    announced_at: str


class UploadInfo(BaseModel):
    name: str
    size_bytes: int
    format: str
    subtype: str
    sample_rate_hz: int
    n_channels: int
    duration_s: float
    speaker_slot_id: str | None
    mic_slot_id: str | None
    device_id: str | None
    signal_id: str | None
    uploaded_at: str


class SignalQuery(BaseModel):
    """The query of ``/v1/measurement/audio``, ``/signal``, ``/audio/info`` and ``measurement.get_audio_info``."""

    model_config = ConfigDict(extra="ignore")
    session_id: str | None = Field(
        default=None, max_length=100, description="A registered session: its signal wins over the other parameters."
    )
    sample_rate: int = Field(default=48000, description="Sample rate in Hz, 8000-192000")
    duration_s: float | None = Field(default=None, description="Sweep length in s, 1-30 (default 5)")
    f_start_hz: float | None = Field(default=None, description="Sweep start in Hz, 20-1000 (default 50)")
    f_end_hz: float | None = Field(
        default=None, description="Sweep end in Hz, 4*f_start_hz to 0.475*sample_rate (default 20000)"
    )
    sweep_f_start: float | None = Field(default=None, description="The app's name for f_start_hz (Hz)")
    sweep_f_end: float | None = Field(default=None, description="The app's name for f_end_hz (Hz)")
    format: Literal["wav", "flac"] = Field(default="wav", description="Container of the audio: wav or flac")


class SignalInfo(BaseModel):
    signal_id: str
    sample_rate_hz: int
    duration_s: float = Field(description="Sweep duration")
    f_start_hz: float
    f_end_hz: float
    total_duration_s: float
    audio_duration_seconds: float = Field(description="= total_duration_s (the app's name)")
    format: str
    audio_format: Literal["wav", "flac"]
    audio_hash: str = Field(description="SHA-256 (hex) of the exact body /v1/measurement/audio serves for this query")
    session_id: str | None = None
    timing: dict[str, Any]


class SessionRegistration(BaseModel):
    """``PUT /v1/measurement/sessions/{session_id}`` (the lobby, with the internal token)."""

    model_config = ConfigDict(extra="ignore")
    job_id: str = Field(min_length=1, max_length=100)
    signal_id: str = Field(min_length=1, max_length=100)


class SessionRecord(SessionRegistration):
    session_id: str


class RecordingError(BaseModel):
    code: str
    message: str


class RecordingResult(BaseModel):
    upload_name: str
    speaker_slot_id: str | None
    mic_slot_id: str | None
    status: Literal["ok", "failed"]
    error: RecordingError | None
    quality: dict[str, Any]
    broadband: dict[str, float | None] | None
    bands: dict[str, dict[str, float | None]] | None
    frequency_response: dict[str, Any] | None = None
    app_results: dict[str, Any] | None = Field(
        default=None, description="This recording in the app's shape: what analysis.run with recording_upload answers"
    )
    plots: dict[str, Any] | None = None
    """Decimated decay curves (with fit ranges), impulse response and frequency response (sonalyze_acoustics.plots)."""


class AnalysisSummary(BaseModel):
    """Counts, and the mean of every value over the recordings that have it (null when none has)."""

    n_recordings: int
    n_ok: int
    n_failed: int
    failed: list[str]
    broadband_mean: dict[str, float | None]
    bands_mean: dict[str, dict[str, float | None]]


class AnalysisResults(BaseModel):
    job_id: str
    results: list[RecordingResult]
    summary: AnalysisSummary


class AnalysisState(BaseModel):
    state: Literal["not_started", "running", "done", "failed"]
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    results: list[RecordingResult] | None = None
    summary: AnalysisSummary | None = None


class JobView(BaseModel):
    job_id: str
    created_at: str
    map: dict[str, Any]
    meta: dict[str, Any]
    signal_id: str | None
    uploads: list[UploadInfo]
    recordings: list[Announcement]
    analysis: AnalysisState
