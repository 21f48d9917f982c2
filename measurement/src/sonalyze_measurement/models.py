"""Request and response bodies of the HTTP API and the gateway events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobCreate(BaseModel):
    """``POST /v1/jobs`` and ``measurement.create_job``."""

    model_config = ConfigDict(extra="ignore")
    map: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    signal_id: str | None = Field(default=None, description="The signal the job's speakers play, when known.")


class JobCreated(BaseModel):
    job_id: str


class JobRef(BaseModel):
    """``measurement.get_job`` and ``analysis.run``."""

    model_config = ConfigDict(extra="ignore")
    job_id: str = Field(min_length=1, max_length=100)


class RecordingAnnouncement(BaseModel):
    """``PUT /v1/jobs/{job_id}/recordings/{upload_name}``: which slots an upload belongs to."""

    model_config = ConfigDict(extra="ignore")
    speaker_slot_id: str | None = Field(default=None, max_length=200)
    mic_slot_id: str | None = Field(default=None, max_length=200)
    device_id: str | None = Field(default=None, max_length=200)
    signal_id: str | None = Field(default=None, max_length=100)


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


class SignalInfo(BaseModel):
    signal_id: str
    sample_rate_hz: int
    duration_s: float = Field(description="Sweep duration")
    f_start_hz: float
    f_end_hz: float
    total_duration_s: float
    format: str
    timing: dict[str, Any]


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


class AnalysisResults(BaseModel):
    job_id: str
    results: list[RecordingResult]
    summary: dict[str, Any]


class AnalysisState(BaseModel):
    state: Literal["not_started", "running", "done", "failed"]
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    results: list[RecordingResult] | None = None
    summary: dict[str, Any] | None = None


class JobView(BaseModel):
    job_id: str
    created_at: str
    map: dict[str, Any]
    meta: dict[str, Any]
    signal_id: str | None
    uploads: list[UploadInfo]
    recordings: list[Announcement]
    analysis: AnalysisState
