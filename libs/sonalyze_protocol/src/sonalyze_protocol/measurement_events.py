"""The measurement protocol on the wire: event names and the shapes of the lobby's pushes.

Shared by the lobby's coordinator (which builds these payloads) and the virtual phones (which read them).
The payloads are `TypedDict`s: plain dicts on the wire, built key by key in the order listed here, so the
JSON a phone receives is exactly what the app's dialect expects (spec phone-app.md, sections 2 and 3).
``NotRequired`` keys are left out when they have no value; every other key is always present (maybe ``null``).
"""

from typing import Any, Final, NotRequired, TypedDict

# --- what devices send (``/gateway/handle`` events of the lobby) ---------------------------------------

CREATE_SESSION: Final = "measurement.create_session"
START_SPEAKER: Final = "measurement.start_speaker"
SESSION_STATUS: Final = "measurement.session_status"
CANCEL_SESSION: Final = "measurement.cancel_session"
READY: Final = "measurement.ready"
SPEAKER_AUDIO_READY: Final = "measurement.speaker_audio_ready"
RECORDING_STARTED: Final = "measurement.recording_started"
PLAYBACK_COMPLETE: Final = "measurement.playback_complete"
RECORDING_UPLOADED: Final = "measurement.recording_uploaded"
REPORT_ERROR: Final = "measurement.error"  # a device reports a failure (same name as the push below)
BROADCAST_RESULTS: Final = "measurement.broadcast_results"
# older app builds' names for ready and playback_complete
CLIENT_READY: Final = "measurement.client_ready"
SPEAKER_FINISHED: Final = "measurement.speaker_finished"

# --- what the lobby pushes -----------------------------------------------------------------------------

START_MEASUREMENT: Final = "measurement.start_measurement"
REQUEST_AUDIO: Final = "measurement.request_audio"
START_RECORDING: Final = "measurement.start_recording"
START_PLAYBACK: Final = "measurement.start_playback"
STOP_RECORDING: Final = "measurement.stop_recording"
SPEAKER_COMPLETE: Final = "measurement.speaker_complete"
SESSION_COMPLETE: Final = "measurement.session_complete"
SESSION_CANCELLED: Final = "measurement.session_cancelled"
ERROR: Final = "measurement.error"
ANALYSIS_COMPLETE: Final = "measurement.analysis_complete"
ANALYSIS_RESULTS: Final = "measurement.analysis_results"
PHASE_UPDATE: Final = "measurement.phase_update"


class RecordingEntry(TypedDict):
    """One counted recording: which speaker played, which microphone recorded, under which upload name."""

    speaker_slot_id: str
    mic_slot_id: str
    device_id: str
    upload_name: str


class StartMeasurement(TypedDict):
    """To the current speaker and every microphone: get ready for this speaker (answer ``ready``)."""

    session_id: str
    speaker_slot_id: str
    job_id: str
    speaker_device_id: str
    speaker_index: int
    speaker_count: int
    microphone_slot_ids: list[str]
    signal_id: str
    current_speaker_slot_id: str  # the app's name for speaker_slot_id


class RequestAudio(TypedDict):
    """To the speaker: download ``audio_url`` (answer ``speaker_audio_ready``)."""

    session_id: str
    speaker_slot_id: str
    audio_url: str
    signal_id: str
    expected_hash: NotRequired[str]  # sha256 hex of the WAV, when known


class StartRecording(TypedDict):
    """To the microphones: start recording (answer ``recording_started``)."""

    session_id: str
    speaker_slot_id: str
    signal_id: str
    audio_url: str
    signal_duration_s: float


class StartPlayback(TypedDict):
    """To the speaker: play the sweep (answer ``playback_complete``)."""

    session_id: str
    speaker_slot_id: str
    signal_id: str


class StopRecording(TypedDict):
    """To one microphone: stop, upload under ``upload_name`` (answer ``recording_uploaded``)."""

    session_id: str
    speaker_slot_id: str
    mic_slot_id: str
    job_id: str
    upload_name: str
    upload_url: str
    upload_endpoint: str  # the app's uploads base: it appends its own upload name


class SpeakerComplete(TypedDict):
    session_id: str
    speaker_slot_id: str
    speaker_index: int
    recordings: list[RecordingEntry]
    next_speaker_slot_id: str | None
    completed_speaker_slot_id: str
    remaining_speakers: int
    remaining_speaker_slot_ids: list[str]


class SessionComplete(TypedDict):
    session_id: str
    job_id: str
    recordings: list[RecordingEntry]
    completed_speakers: list[str]


class SessionCancelled(TypedDict):
    session_id: str | None  # None: the lobby restarted and lost the session's id
    lobby_id: NotRequired[str]
    reason: str
    cancelled_by: str | None
    message: NotRequired[str]


class StepTimeoutError(TypedDict):
    """``measurement.error`` when a step timed out (``code`` ``step_timeout``)."""

    session_id: str
    code: str
    step: str
    missing_device_ids: list[str]
    speaker_slot_id: str | None
    reason: str
    message: str
    error_device_id: str | None
    error_message: str
    error_code: str


class DeviceReportedError(TypedDict):
    """``measurement.error`` relaying a device's own report (``code`` ``device_error``)."""

    session_id: str
    code: str
    step: str
    device_id: str
    error_device_id: str
    error_code: str
    error_message: str
    speaker_slot_id: str | None
    message: str


class AnalysisFailedError(TypedDict):
    """``measurement.error`` when the job's analysis failed (``code`` ``analysis_failed``)."""

    session_id: str
    job_id: str
    code: str
    step: str
    message: str
    reason: str
    error_device_id: None
    error_message: str
    error_code: str


class AnalysisComplete(TypedDict):
    session_id: str
    job_id: str
    results: Any
    summary: NotRequired[Any]


class AnalysisResults(TypedDict):
    """One recording's results in the app's shape: automatic (after the analysis) or relayed by the host."""

    session_id: str
    job_id: str
    results: Any
    recording_upload: NotRequired[str]
    speaker_slot_id: NotRequired[str]
    mic_slot_id: NotRequired[str]
    device_id: NotRequired[str]
    upload_name: NotRequired[str]
    from_device_id: NotRequired[str]
    source: str  # "automatic" or "host"


class PhaseUpdate(TypedDict):
    """Where the session is and how far each wait has come; the app's timeline follows ``phase``."""

    session_id: str
    job_id: str
    phase: str
    phase_description: str
    step: str
    current_speaker_slot_id: str | None
    speaker_device_id: str | None
    speaker_index: int
    total_speakers: int
    cycle: int
    devices_ready: int
    total_devices: int
    recordings_started: int
    total_microphones: int
    uploads_received: int
    recordings_received: int
    total_recordings: int


class SlotView(TypedDict):
    device_id: str
    slot_id: str


class LastError(TypedDict):
    code: str
    step: str
    message: str
    device_ids: list[str]


class SessionStatus(TypedDict):
    """The answer of ``create_session``, ``start_speaker``, ``cancel_session`` and ``session_status``."""

    session_id: str
    lobby_id: str
    job_id: str
    state: str
    step: str
    speakers: list[SlotView]
    microphones: list[SlotView]
    current_speaker: SlotView | None
    speaker_index: int
    cycle: int
    awaiting_device_ids: list[str]
    disconnected_device_ids: list[str]
    recordings: list[RecordingEntry]
    signal_id: str
    audio_url: str
    audio_duration_seconds: float  # the app's name for the signal's length (it plans its recording with it)
    last_error: LastError | None
    results: Any
    analysis_error: str | None
    cancel_reason: str | None


# each push the lobby sends -> its payload model(s) (measurement.error has one per cause)
PUSH_PAYLOADS: Final[dict[str, tuple[type, ...]]] = {
    START_MEASUREMENT: (StartMeasurement,),
    REQUEST_AUDIO: (RequestAudio,),
    START_RECORDING: (StartRecording,),
    START_PLAYBACK: (StartPlayback,),
    STOP_RECORDING: (StopRecording,),
    SPEAKER_COMPLETE: (SpeakerComplete,),
    SESSION_COMPLETE: (SessionComplete,),
    SESSION_CANCELLED: (SessionCancelled,),
    ERROR: (StepTimeoutError, DeviceReportedError, AnalysisFailedError),
    ANALYSIS_COMPLETE: (AnalysisComplete,),
    ANALYSIS_RESULTS: (AnalysisResults,),
    PHASE_UPDATE: (PhaseUpdate,),
}


def fits_payload(event: str, data: dict[str, Any]) -> bool:
    """Whether ``data`` has every always-sent key of one of ``event``'s models and no undeclared key."""
    return any(
        _keys(m, "__required_keys__") <= data.keys() <= _keys(m, "__annotations__") for m in PUSH_PAYLOADS[event]
    )


def _keys(model: type, attribute: str) -> frozenset[str]:
    """A `TypedDict` class's ``__required_keys__`` or declared keys (typed checkers see only ``type``)."""
    return frozenset(getattr(model, attribute))
