"""What `advance` reacts to: the devices' messages (from ``/gateway/handle``) and the runner's internal ones."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sonalyze_protocol import measurement_events as events

# --- from the admin ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartSpeaker:
    device_id: str


@dataclass(frozen=True, slots=True)
class CancelSession:
    device_id: str
    reason: str | None = None


# --- from the devices of a cycle -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    device_id: str


@dataclass(frozen=True, slots=True)
class SpeakerAudioReady:
    device_id: str
    audio_hash: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    device_id: str


@dataclass(frozen=True, slots=True)
class PlaybackComplete:
    device_id: str


@dataclass(frozen=True, slots=True)
class RecordingUploaded:
    device_id: str
    upload_name: str


@dataclass(frozen=True, slots=True)
class ErrorReported:
    """A device of the session reports a failure (``measurement.error`` sent by a phone)."""

    device_id: str
    error_message: str
    error_code: str | None = None


# --- from the runner (internal: never refused, a stale one is ignored) ---------------------------------


@dataclass(frozen=True, slots=True)
class UploadVerified:
    """The measurement service has the upload (sent by the runner after `VerifyUpload`)."""

    device_id: str
    upload_name: str
    cycle: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str
    generation: int


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    device_id: str
    connected: bool


@dataclass(frozen=True, slots=True)
class AnalysisFinished:
    results: Any
    summary: Any = None


@dataclass(frozen=True, slots=True)
class AnalysisFailed:
    reason: str


CycleMessage = Ready | SpeakerAudioReady | RecordingStarted | PlaybackComplete | RecordingUploaded
AdminMessage = StartSpeaker | CancelSession
DeviceMessage = AdminMessage | CycleMessage | ErrorReported
InternalMessage = UploadVerified | TimerFired | ConnectionChanged | AnalysisFinished | AnalysisFailed
Message = DeviceMessage | InternalMessage

DEVICE_MESSAGES: Final[tuple[type[DeviceMessage], ...]] = (
    StartSpeaker,
    CancelSession,
    Ready,
    SpeakerAudioReady,
    RecordingStarted,
    PlaybackComplete,
    RecordingUploaded,
    ErrorReported,
)
INTERNAL_MESSAGES: Final[tuple[type[InternalMessage], ...]] = (
    UploadVerified,
    TimerFired,
    ConnectionChanged,
    AnalysisFinished,
    AnalysisFailed,
)

# the event each device message arrives as (older app builds' aliases: see measurement_handlers)
WIRE_NAMES: Final[dict[type[DeviceMessage], str]] = {
    StartSpeaker: events.START_SPEAKER,
    CancelSession: events.CANCEL_SESSION,
    Ready: events.READY,
    SpeakerAudioReady: events.SPEAKER_AUDIO_READY,
    RecordingStarted: events.RECORDING_STARTED,
    PlaybackComplete: events.PLAYBACK_COMPLETE,
    RecordingUploaded: events.RECORDING_UPLOADED,
    ErrorReported: events.REPORT_ERROR,
}


class Sender(StrEnum):
    """Who may send a device message; checked before the table (cycle senders: during a cycle only)."""

    ADMIN = "the lobby admin"
    MEMBER = "a device of the session"
    SPEAKER_OR_MICROPHONE = "the current speaker or a microphone"
    SPEAKER = "the current speaker"
    MICROPHONE = "a microphone"


SENDERS: Final[dict[type[DeviceMessage], Sender]] = {
    StartSpeaker: Sender.ADMIN,
    CancelSession: Sender.ADMIN,
    ErrorReported: Sender.MEMBER,
    Ready: Sender.SPEAKER_OR_MICROPHONE,
    SpeakerAudioReady: Sender.SPEAKER,
    RecordingStarted: Sender.MICROPHONE,
    PlaybackComplete: Sender.SPEAKER,
    RecordingUploaded: Sender.MICROPHONE,
}
