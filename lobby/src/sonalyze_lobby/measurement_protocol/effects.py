"""What `advance` asks for, as data: `session_runner` carries the effects out in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SendPush:
    """Push ``event`` with ``data`` (a `sonalyze_protocol.measurement_events` payload) to ``device_ids``."""

    device_ids: tuple[str, ...]
    event: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm (or re-arm) timer ``key``; when it fires, answer ``TimerFired(key, generation)``."""

    key: str
    seconds: float
    generation: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True)
class VerifyUpload:
    """Tell the job which slots the upload belongs to (whatever its name: ours or the app's
    ``recording_<mic>_<speaker>.wav``), then ask the measurement service whether it is stored; answer
    with `UploadVerified` if so."""

    device_id: str
    upload_name: str
    cycle: int
    speaker_slot_id: str
    mic_slot_id: str


@dataclass(frozen=True, slots=True)
class Analyze:
    """Run the job's analysis; answer with `AnalysisFinished` or `AnalysisFailed`."""

    job_id: str


@dataclass(frozen=True, slots=True)
class ReleaseLobby:
    """The session no longer holds its lobby: ``measurement_running`` -> ``open`` (unless it closed meanwhile)."""

    lobby_id: str


Effect = SendPush | StartTimer | CancelTimer | VerifyUpload | Analyze | ReleaseLobby
