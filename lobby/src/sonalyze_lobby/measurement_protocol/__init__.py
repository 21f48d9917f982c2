"""The measurement protocol as a pure state machine: ``advance(state, message) -> (state, effects)``.

No I/O, no clock, no awaits: `session_runner` carries out the effects and feeds their outcomes back as
messages. Modules: `state` (the session and its steps), `messages` (what comes in), `effects` (what goes
out, as data), `transitions` (the table of what every message does in every step, and `advance`),
`payloads` (the wire shapes of the pushes and answers).
"""

from sonalyze_lobby.measurement_protocol.effects import (
    Analyze,
    CancelTimer,
    Effect,
    ReleaseLobby,
    SendPush,
    StartTimer,
    VerifyUpload,
)
from sonalyze_lobby.measurement_protocol.messages import (
    AnalysisFailed,
    AnalysisFinished,
    CancelSession,
    ConnectionChanged,
    ErrorReported,
    Message,
    PlaybackComplete,
    Ready,
    RecordingStarted,
    RecordingUploaded,
    SpeakerAudioReady,
    StartSpeaker,
    TimerFired,
    UploadVerified,
)
from sonalyze_lobby.measurement_protocol.payloads import status
from sonalyze_lobby.measurement_protocol.state import (
    CountedRecording,
    SessionState,
    SignalInfo,
    Slot,
    Step,
    Timeouts,
    check_line_up,
)
from sonalyze_lobby.measurement_protocol.transitions import TABLE, advance, new_session

__all__ = [
    "TABLE",
    "AnalysisFailed",
    "AnalysisFinished",
    "Analyze",
    "CancelSession",
    "CancelTimer",
    "ConnectionChanged",
    "CountedRecording",
    "Effect",
    "ErrorReported",
    "Message",
    "PlaybackComplete",
    "Ready",
    "RecordingStarted",
    "RecordingUploaded",
    "ReleaseLobby",
    "SendPush",
    "SessionState",
    "SignalInfo",
    "Slot",
    "SpeakerAudioReady",
    "StartSpeaker",
    "StartTimer",
    "Step",
    "Timeouts",
    "TimerFired",
    "UploadVerified",
    "VerifyUpload",
    "advance",
    "check_line_up",
    "new_session",
    "status",
]
