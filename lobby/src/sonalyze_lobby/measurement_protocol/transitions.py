"""The protocol's rules: `TABLE[step][message type]` says what every message does in every step; `advance` obeys it.

To learn what message M does in step S, read ``TABLE[S][M]``: a `Rule` named in the per-step tables below,
defined just above them with its outcome, the steps it can lead to, the pushes it may send and what it does
in words. A pair the per-step tables do not list is refused (``invalid_state``) for a device's message and
ignored for an internal one (from the runner: timers, connections, the measurement service).

Before the table, `advance` checks who sends a device message, in this order:

1. a device that is neither the admin nor a speaker or microphone of the session: ``forbidden``;
2. ``start_speaker`` / ``cancel_session`` from anyone but the admin: ``forbidden``;
   then ``recording_uploaded`` naming an upload already counted is a repeat, in every step: ignored
   (``forbidden`` from another device than the one it was counted for; ``bad_request`` if it is the
   previous speaker's recording and its microphone still owes this speaker's);
3. during a cycle (`CYCLE_STEPS`), a cycle message from a device the message's own step does not wait
   for (`messages.SENDERS`: ``ready`` from this cycle's speaker or a microphone, ``recording_started``
   from a microphone, ...): ``forbidden``.

Then the rule: refused -> `InvalidState` (the state unchanged; the caller keeps the old one); ignored ->
the same state, no effects; accepted -> its action's new state and effects (an action may still find
a repeat and change nothing, or refuse bad data with ``bad_request`` / ``forbidden``). Whenever the
phase or one of its counters moved, everyone in the session also gets a ``measurement.phase_update``
after the rule's own pushes.

Every step that is not final keeps a ``step`` timer: the cycle steps fail with ``step_timeout``,
idle/failed expire the session (the admin never came back), analyzing gives up on the analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Literal

from sonalyze_lobby.measurement_protocol import payloads
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
    DEVICE_MESSAGES,
    INTERNAL_MESSAGES,
    SENDERS,
    WIRE_NAMES,
    AnalysisFailed,
    AnalysisFinished,
    CancelSession,
    ConnectionChanged,
    CycleMessage,
    DeviceMessage,
    ErrorReported,
    Message,
    PlaybackComplete,
    Ready,
    RecordingStarted,
    RecordingUploaded,
    Sender,
    SpeakerAudioReady,
    StartSpeaker,
    TimerFired,
    UploadVerified,
)
from sonalyze_lobby.measurement_protocol.state import (
    CYCLE_STEPS,
    GRACE_TIMER_PREFIX,
    STEP_TIMEOUT_CODE,
    STEP_TIMER,
    CountedRecording,
    Failure,
    SessionState,
    SignalInfo,
    Slot,
    Step,
    Timeouts,
    app_upload_name_for,
    awaited_in,
    check_line_up,
    is_valid_upload_name,
    upload_name_for,
)
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.errors import BadRequest, Forbidden, InvalidState

Transition = tuple[SessionState, list[Effect]]
Action = Callable[[SessionState, Any], Transition]
STAY: Final = "stay"
DEFAULT_TIMEOUTS: Final = Timeouts()


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the rule's action runs
    IGNORED = "ignored"  # a repeat or a stale message: the same state, no effects
    REFUSED = "refused"  # invalid_state: the message does not fit this step


@dataclass(frozen=True, slots=True)
class Rule:
    """What one message does in one step."""

    outcome: Outcome
    does: str
    to: frozenset[Step | Literal["stay"]] = frozenset({STAY})  # the steps it can lead to; "stay": this one
    pushes: tuple[str, ...] = ()  # the events it may push (besides the phase_update `advance` adds)
    action: Action | None = None


def accepted(action: Action, *, to: Iterable[Step | Literal["stay"]], pushes: Iterable[str] = (), does: str) -> Rule:
    return Rule(Outcome.ACCEPTED, does, frozenset(to), tuple(pushes), action)


def ignored(why: str) -> Rule:
    return Rule(Outcome.IGNORED, why)


REFUSED: Final = Rule(Outcome.REFUSED, "invalid_state: the message does not fit this step")
IGNORED_INTERNAL: Final = ignored("an internal message that no longer applies")

# --- what each cycle step does on entry: the command it waits on and its step timer ---------------------

COMMANDS: Final[dict[Step, str]] = {
    Step.AWAITING_READY: events.START_MEASUREMENT,  # to the speaker and every microphone
    Step.AWAITING_AUDIO: events.REQUEST_AUDIO,  # to the speaker
    Step.AWAITING_RECORDING: events.START_RECORDING,  # to the microphones
    Step.AWAITING_PLAYBACK: events.START_PLAYBACK,  # to the speaker
    Step.AWAITING_UPLOADS: events.STOP_RECORDING,  # to each microphone, with its own upload name
}
STEP_TIMEOUTS_S: Final[dict[Step, Callable[[SessionState], float]]] = {
    Step.AWAITING_READY: lambda s: s.timeouts.ready_s,
    Step.AWAITING_AUDIO: lambda s: s.timeouts.audio_s,
    Step.AWAITING_RECORDING: lambda s: s.timeouts.recording_s,
    Step.AWAITING_PLAYBACK: lambda s: s.timeouts.playback_margin_s + s.signal.duration_s,
    Step.AWAITING_UPLOADS: lambda s: s.timeouts.upload_s,
}
# the step a cycle message answers; after it, the cycle goes on with NEXT_STEP (the uploads: see count_upload)
ANSWERS: Final[dict[type[Message], Step]] = {
    Ready: Step.AWAITING_READY,
    SpeakerAudioReady: Step.AWAITING_AUDIO,
    RecordingStarted: Step.AWAITING_RECORDING,
    PlaybackComplete: Step.AWAITING_PLAYBACK,
    RecordingUploaded: Step.AWAITING_UPLOADS,
}
NEXT_STEP: Final[dict[Step, Step]] = {
    Step.AWAITING_READY: Step.AWAITING_AUDIO,
    Step.AWAITING_AUDIO: Step.AWAITING_RECORDING,
    Step.AWAITING_RECORDING: Step.AWAITING_PLAYBACK,
    Step.AWAITING_PLAYBACK: Step.AWAITING_UPLOADS,
}


# --- the session's start ---------------------------------------------------------------------------------


def new_session(
    *,
    session_id: str,
    lobby_id: str,
    job_id: str,
    admin_device_id: str,
    speakers: Iterable[Slot],
    microphones: Iterable[Slot],
    signal: SignalInfo,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    disconnected: Iterable[str] = (),
    upload_base_url: str = "",
) -> Transition:
    """A fresh session in ``idle`` (waiting for ``start_speaker``) and its first timer; checks the line-up."""
    speakers, microphones = tuple(speakers), tuple(microphones)
    check_line_up(speakers, microphones)
    device_ids = {s.device_id for s in (*speakers, *microphones)}
    state = SessionState(
        session_id=session_id,
        lobby_id=lobby_id,
        job_id=job_id,
        admin_device_id=admin_device_id,
        speakers=speakers,
        microphones=microphones,
        signal=signal,
        timeouts=timeouts,
        disconnected=frozenset(disconnected) & device_ids,
        upload_base_url=upload_base_url.rstrip("/"),
    )
    effects: list[Effect] = []
    state = _arm(state, STEP_TIMER, timeouts.idle_s, effects)
    return state, effects


# --- the actions (each one a rule's ``action``) -------------------------------------------------------------


def start_cycle(state: SessionState, _: StartSpeaker) -> Transition:
    speaker = state.current_speaker
    assert speaker is not None
    if state.step is Step.FAILED:  # measured again from the start; its partial uploads will be overwritten
        state = replace(state, recordings=tuple(r for r in state.recordings if r.speaker_slot_id != speaker.slot_id))
    state = replace(state, cycle=state.cycle + 1, failure=None)
    return _enter(state, Step.AWAITING_READY, [])


def cancel(state: SessionState, message: CancelSession) -> Transition:
    return _end_cancelled(state, message.reason or "cancelled by the admin", message.device_id)


def fail_by_device(state: SessionState, message: ErrorReported) -> Transition:
    data = payloads.device_reported_error(state, message.device_id, message.error_message, message.error_code)
    failure = Failure("device_error", state.step, data["message"], (message.device_id,))
    return _stop_cycle(state, failure, SendPush(state.members, events.ERROR, data))


def relay_device_error(state: SessionState, message: ErrorReported) -> Transition:
    data = payloads.device_reported_error(state, message.device_id, message.error_message, message.error_code)
    return state, [SendPush(state.members, events.ERROR, data)]


def answer(state: SessionState, message: CycleMessage) -> Transition:
    """The device answers the current step; once nobody is left, the cycle goes on."""
    if message.device_id not in state.awaited:
        return state, []  # a repeat within the step
    if isinstance(message, SpeakerAudioReady) and message.audio_hash is not None:
        expected_hash = state.signal.audio_sha256
        if expected_hash is not None and _normal_hash(message.audio_hash) != expected_hash.lower():
            raise BadRequest(
                f"data.audio_hash does not match signal {state.signal.signal_id}; download audio_url again"
            )
    return _answered(state, message.device_id)


def report_upload(state: SessionState, message: RecordingUploaded) -> Transition:
    """A valid name from an awaited microphone is verified (repeats of counted uploads: see `advance`)."""
    if message.device_id not in state.awaited:
        return state, []  # a repeat within the step
    return state, [_verify_upload(state, message.device_id, message.upload_name)]


def count_upload(state: SessionState, message: UploadVerified) -> Transition:
    fits = (
        message.cycle == state.cycle
        and message.device_id in state.awaited
        and _names_this_pair(state, message.device_id, message.upload_name)
    )
    if not fits:
        return state, []
    speaker = state.current_speaker
    assert speaker is not None
    mic = next(m for m in state.microphones if m.device_id == message.device_id)
    recording = CountedRecording(speaker.slot_id, mic.slot_id, message.device_id, message.upload_name)
    state = replace(state, recordings=(*state.recordings, recording))
    return _answered(state, message.device_id)


def cycle_timer(state: SessionState, message: TimerFired) -> Transition:
    consumed = _consume_timer(state, message)
    if consumed is None:
        return state, []
    state = consumed
    if message.key == STEP_TIMER:
        return _timeout_failure(state, state.awaited, "no answer in time")
    device_id = message.key.removeprefix(GRACE_TIMER_PREFIX)
    if device_id in state.awaited and device_id in state.disconnected:
        return _timeout_failure(state, state.awaited, f"device {device_id} disconnected and did not come back")
    return state, []


def idle_timer(state: SessionState, message: TimerFired) -> Transition:
    consumed = _consume_timer(state, message)
    if consumed is None:
        return state, []
    if message.key == STEP_TIMER:
        return _end_cancelled(consumed, "idle_timeout: no start_speaker in time", None)
    return consumed, []


def analysis_timer(state: SessionState, message: TimerFired) -> Transition:
    consumed = _consume_timer(state, message)
    if consumed is None:
        return state, []
    if message.key == STEP_TIMER:
        return fail_analysis(consumed, AnalysisFailed("the analysis did not finish in time"))
    return consumed, []


def forget_timer(state: SessionState, message: TimerFired) -> Transition:
    consumed = _consume_timer(state, message)
    return (state if consumed is None else consumed), []


def connection_changed(state: SessionState, message: ConnectionChanged) -> Transition:
    device_id = message.device_id
    if device_id not in state.device_ids:
        return state, []
    effects: list[Effect] = []
    key = GRACE_TIMER_PREFIX + device_id
    if message.connected:
        was_gone = device_id in state.disconnected
        state = _disarm(replace(state, disconnected=state.disconnected - {device_id}), key, effects)
        if was_gone and device_id in state.awaited:
            effects.extend(payloads.command_pushes(state, {device_id}))
        if was_gone:  # it may have missed phase updates while away
            effects.append(SendPush((device_id,), events.PHASE_UPDATE, payloads.phase_progress(state)))
        return state, effects
    state = replace(state, disconnected=state.disconnected | {device_id})
    if state.step in CYCLE_STEPS and device_id in state.awaited and key not in state.timers:
        state = _arm(state, key, state.timeouts.disconnect_grace_s, effects)
    return state, effects


def finish_analysis(state: SessionState, message: AnalysisFinished) -> Transition:
    data = payloads.analysis_complete(state, message.results, message.summary)
    effects: list[Effect] = [SendPush(state.members, events.ANALYSIS_COMPLETE, data)]
    effects.extend(
        SendPush(state.members, events.ANALYSIS_RESULTS, p) for p in payloads.automatic_results(state, message.results)
    )
    state = _disarm(replace(state, step=Step.COMPLETE, results=message.results), STEP_TIMER, effects)
    return state, effects


def fail_analysis(state: SessionState, message: AnalysisFailed) -> Transition:
    effects: list[Effect] = [
        SendPush(state.members, events.ERROR, payloads.analysis_failed_error(state, message.reason))
    ]
    state = _disarm(replace(state, step=Step.COMPLETE, analysis_error=message.reason), STEP_TIMER, effects)
    return state, effects


# --- the rules ---------------------------------------------------------------------------------------------

START = accepted(
    start_cycle,
    to={Step.AWAITING_READY},
    pushes=[events.START_MEASUREMENT],
    does="a new cycle for the current speaker (after a failure its partial recordings are dropped): "
    "start_measurement to it and every microphone; step timer ready_s",
)
CANCEL = accepted(
    cancel,
    to={Step.CANCELLED},
    pushes=[events.SESSION_CANCELLED],
    does="session_cancelled to everyone; the lobby is released; every timer stops",
)
FAIL_BY_DEVICE = accepted(
    fail_by_device,
    to={Step.FAILED},
    pushes=[events.ERROR],
    does="the cycle fails: measurement.error (device_error) to everyone; grace timers stop; step timer idle_s "
    "(the admin may start the speaker again)",
)
RELAY_DEVICE_ERROR = accepted(
    relay_device_error,
    to={STAY},
    pushes=[events.ERROR],
    does="nothing runs: measurement.error (device_error) to everyone, nothing stops",
)
LATE = ignored("a late repeat of an answer the cycle has already moved past")


def _answer(step: Step, does: str) -> Rule:
    """A device answers ``step``: once everyone has, the next step's command and timer."""
    next_step = NEXT_STEP[step]
    return accepted(answer, to={STAY, next_step}, pushes=[COMMANDS[next_step]], does=does)


READY_ANSWERED = _answer(
    Step.AWAITING_READY, "the device is ready; once all are: request_audio to the speaker, step timer audio_s"
)
AUDIO_ANSWERED = _answer(
    Step.AWAITING_AUDIO,
    "a wrong audio_hash: bad_request; else start_recording to the microphones, step timer recording_s",
)
RECORDING_ANSWERED = _answer(
    Step.AWAITING_RECORDING,
    "the microphone records; once all do: start_playback to the speaker, "
    "step timer playback_margin_s + the signal's length",
)
PLAYBACK_ANSWERED = _answer(
    Step.AWAITING_PLAYBACK, "stop_recording to each microphone with its own upload name, step timer upload_s"
)
UPLOAD_REPORTED = accepted(
    report_upload,
    to={STAY},
    does="a valid name for (current speaker, this microphone), ours or the app's: VerifyUpload (the runner "
    "answers UploadVerified); another pair's or an invalid name: bad_request; from a microphone no longer "
    "awaited: ignored (a counted upload's repeat is settled before the table)",
)
COUNT_UPLOAD = accepted(
    count_upload,
    to={STAY, Step.AWAITING_READY, Step.ANALYZING},
    pushes=[events.SPEAKER_COMPLETE, events.START_MEASUREMENT, events.SESSION_COMPLETE],
    does="counted if it fits (this cycle, an awaited microphone, a name for this pair; else ignored). "
    "A speaker's last upload: speaker_complete, then the next speaker's start_measurement (step timer "
    "ready_s) or, after the last speaker, session_complete, the lobby released, Analyze, step timer analysis_s",
)
FINISH_ANALYSIS = accepted(
    finish_analysis,
    to={Step.COMPLETE},
    pushes=[events.ANALYSIS_COMPLETE, events.ANALYSIS_RESULTS],
    does="analysis_complete to everyone, then one analysis_results per recording with the app's results",
)
FAIL_ANALYSIS = accepted(
    fail_analysis,
    to={Step.COMPLETE},
    pushes=[events.ERROR],
    does="measurement.error (analysis_failed) to everyone",
)
CYCLE_TIMER = accepted(
    cycle_timer,
    to={STAY, Step.FAILED},
    pushes=[events.ERROR],
    does="step timer, or the grace timer of an awaited device still away: the cycle fails (step_timeout "
    "naming the devices awaited) to everyone; grace timers stop; step timer idle_s. Stale: ignored",
)
IDLE_TIMER = accepted(
    idle_timer,
    to={STAY, Step.CANCELLED},
    pushes=[events.SESSION_CANCELLED],
    does="step timer: the admin never came back: session_cancelled (idle_timeout), the lobby is released. "
    "Stale or a grace timer: ignored",
)
ANALYSIS_TIMER = accepted(
    analysis_timer,
    to={STAY, Step.COMPLETE},
    pushes=[events.ERROR],
    does="step timer: the analysis is given up: measurement.error (analysis_failed) to everyone",
)
FORGET_TIMER = accepted(forget_timer, to={STAY}, does="the timer is forgotten; nothing else happens")


def _connection(step: Step) -> Rule:
    command = [COMMANDS[step]] if step in COMMANDS else []
    return accepted(
        connection_changed,
        to={STAY},
        pushes=[*command, events.PHASE_UPDATE],
        does="away: remembered; a device this cycle step awaits gets a grace timer (disconnect_grace_s). "
        "Back: its grace timer stops; if it was away, it gets the step's command again (when awaited) "
        "and a phase_update",
    )


CONNECTION: Final = {step: _connection(step) for step in Step}

# --- the table: per step, the messages that are not refused (device) or ignored (internal) --------------------

S = Step
_STEPS: Final[dict[Step, dict[type[Message], Rule]]] = {
    S.IDLE: {
        StartSpeaker: START, CancelSession: CANCEL, ErrorReported: RELAY_DEVICE_ERROR,
        TimerFired: IDLE_TIMER, ConnectionChanged: CONNECTION[S.IDLE],
    },
    S.AWAITING_READY: {
        CancelSession: CANCEL, ErrorReported: FAIL_BY_DEVICE,
        Ready: READY_ANSWERED,
        TimerFired: CYCLE_TIMER, ConnectionChanged: CONNECTION[S.AWAITING_READY],
    },
    S.AWAITING_AUDIO: {
        CancelSession: CANCEL, ErrorReported: FAIL_BY_DEVICE,
        Ready: LATE, SpeakerAudioReady: AUDIO_ANSWERED,
        TimerFired: CYCLE_TIMER, ConnectionChanged: CONNECTION[S.AWAITING_AUDIO],
    },
    S.AWAITING_RECORDING: {
        CancelSession: CANCEL, ErrorReported: FAIL_BY_DEVICE,
        Ready: LATE, SpeakerAudioReady: LATE, RecordingStarted: RECORDING_ANSWERED,
        TimerFired: CYCLE_TIMER, ConnectionChanged: CONNECTION[S.AWAITING_RECORDING],
    },
    S.AWAITING_PLAYBACK: {
        CancelSession: CANCEL, ErrorReported: FAIL_BY_DEVICE,
        Ready: LATE, SpeakerAudioReady: LATE, RecordingStarted: LATE, PlaybackComplete: PLAYBACK_ANSWERED,
        TimerFired: CYCLE_TIMER, ConnectionChanged: CONNECTION[S.AWAITING_PLAYBACK],
    },
    S.AWAITING_UPLOADS: {
        CancelSession: CANCEL, ErrorReported: FAIL_BY_DEVICE,
        Ready: LATE, SpeakerAudioReady: LATE, RecordingStarted: LATE, PlaybackComplete: LATE,
        RecordingUploaded: UPLOAD_REPORTED, UploadVerified: COUNT_UPLOAD,
        TimerFired: CYCLE_TIMER, ConnectionChanged: CONNECTION[S.AWAITING_UPLOADS],
    },
    S.FAILED: {
        StartSpeaker: START, CancelSession: CANCEL, ErrorReported: RELAY_DEVICE_ERROR,
        TimerFired: IDLE_TIMER, ConnectionChanged: CONNECTION[S.FAILED],
    },
    S.ANALYZING: {
        AnalysisFinished: FINISH_ANALYSIS, AnalysisFailed: FAIL_ANALYSIS,
        TimerFired: ANALYSIS_TIMER, ConnectionChanged: CONNECTION[S.ANALYZING],
    },
    S.COMPLETE: { TimerFired: FORGET_TIMER},
    S.CANCELLED: {CancelSession: ignored("already cancelled"), TimerFired: FORGET_TIMER},
}  # fmt: skip

TABLE: Final[Mapping[Step, Mapping[type[Message], Rule]]] = {
    step: {
        **dict.fromkeys(DEVICE_MESSAGES, REFUSED),
        **dict.fromkeys(INTERNAL_MESSAGES, IGNORED_INTERNAL),
        **_STEPS[step],
    }
    for step in Step
}


# --- advance -----------------------------------------------------------------------------------------------


def advance(state: SessionState, message: Message) -> Transition:
    """The next state and what to do about it, as `TABLE` says; raises `AppError` (state unchanged) if refused."""
    if isinstance(message, DEVICE_MESSAGES):
        _check_sender(state, message)
        if isinstance(message, RecordingUploaded) and (repeat := _repeated_upload(state, message)) is not None:
            return repeat
        _check_cycle_sender(state, message)
    rule = TABLE[state.step][type(message)]
    if rule.outcome is Outcome.REFUSED:
        assert isinstance(message, DEVICE_MESSAGES)
        raise _invalid_state(state, message)
    if rule.action is None:
        return state, []
    new_state, effects = rule.action(state, message)
    moved_to: Step | Literal["stay"] = STAY if new_state.step is state.step else new_state.step
    if moved_to not in rule.to:
        raise AssertionError(f"{type(message).__name__} in step {state.step} led to {moved_to}, not {set(rule.to)}")
    progress = payloads.phase_progress(new_state)
    if progress != payloads.phase_progress(state):
        effects.append(SendPush(new_state.members, events.PHASE_UPDATE, progress))
    return new_state, effects


def _check_sender(state: SessionState, message: DeviceMessage) -> None:
    device_id = message.device_id
    if not state.is_member(device_id):
        raise Forbidden(f"device {device_id} is not part of measurement session {state.session_id}")
    sender = SENDERS[type(message)]
    if sender is Sender.ADMIN and device_id != state.admin_device_id:
        raise Forbidden(f"only the lobby admin may send {_short_name(message)}")


def _check_cycle_sender(state: SessionState, message: DeviceMessage) -> None:
    sender = SENDERS[type(message)]
    device_id = message.device_id
    answers = ANSWERS.get(type(message))
    if answers is not None and state.step in CYCLE_STEPS and device_id not in awaited_in(state, answers):
        raise Forbidden(
            f"{WIRE_NAMES[type(message)]} must come from {sender.value} of this cycle, not from {device_id}"
        )


def _short_name(message: DeviceMessage) -> str:
    return WIRE_NAMES[type(message)].removeprefix("measurement.")


def _invalid_state(state: SessionState, message: DeviceMessage) -> InvalidState:
    return InvalidState(
        f"{WIRE_NAMES[type(message)]} does not fit: the session is in step {state.step.value}", step=state.step.value
    )


# --- helpers of the actions ---------------------------------------------------------------------------------


def _counted(state: SessionState, upload_name: str) -> CountedRecording | None:
    return next((r for r in state.recordings if r.upload_name == upload_name), None)


def _repeated_upload(state: SessionState, message: RecordingUploaded) -> Transition | None:
    """``None`` unless the name is already counted; then the repeat changes nothing (or is refused)."""
    counted = _counted(state, message.upload_name)
    if counted is None:
        return None
    if counted.device_id != message.device_id:
        raise Forbidden(f"upload {message.upload_name} belongs to device {counted.device_id}")
    speaker = state.current_speaker
    if (
        state.step is Step.AWAITING_UPLOADS
        and message.device_id in state.awaited
        and speaker is not None
        and counted.speaker_slot_id != speaker.slot_id
    ):
        raise BadRequest(
            f"data.upload_name: {message.upload_name} already holds the recording of "
            f"{counted.speaker_slot_id}; upload {speaker.slot_id}'s under another name"
        )
    return state, []


def _names_this_pair(state: SessionState, mic_device_id: str, upload_name: str) -> bool:
    """Whether a confirmed upload may count as (current speaker, this microphone)'s recording."""
    if any(r.upload_name == upload_name for r in state.recordings):
        return False
    try:
        _verify_upload(state, mic_device_id, upload_name)
    except BadRequest:
        return False
    return True


def _verify_upload(state: SessionState, mic_device_id: str, upload_name: str) -> VerifyUpload:
    """Any valid name a session microphone uploads now is (current speaker, that microphone)'s recording,
    except a name that belongs to another pair (ours or the app's form), which is a mistake."""
    speaker = state.current_speaker
    assert speaker is not None
    mic = next(m for m in state.microphones if m.device_id == mic_device_id)
    wanted = upload_name_for(speaker.slot_id, mic.slot_id)
    if upload_name != wanted:
        if not is_valid_upload_name(upload_name):
            raise BadRequest(
                f"data.upload_name: {upload_name!r} is not a valid upload name (1-100 of A-Z a-z 0-9 . _ -); "
                f"expected {wanted} or {app_upload_name_for(mic_device_id, speaker.slot_id)}"
            )
        others = {
            name
            for s in state.speakers
            for m in state.microphones
            if (s.slot_id, m.slot_id) != (speaker.slot_id, mic.slot_id)
            for name in (upload_name_for(s.slot_id, m.slot_id), app_upload_name_for(m.device_id, s.slot_id))
        }
        if upload_name in others:
            raise BadRequest(
                f"data.upload_name: {upload_name} belongs to another pair; expected {wanted} from device {mic_device_id}"
            )
    return VerifyUpload(
        mic_device_id, upload_name, state.cycle, speaker_slot_id=speaker.slot_id, mic_slot_id=mic.slot_id
    )


def _normal_hash(value: str) -> str:
    return value.strip().lower().removeprefix("sha256:")


def _answered(state: SessionState, device_id: str) -> Transition:
    """``device_id`` has answered the current step; move on once nobody is left."""
    effects: list[Effect] = []
    awaited = state.awaited - {device_id}
    state = replace(state, awaited=awaited)
    state = _disarm(state, GRACE_TIMER_PREFIX + device_id, effects)
    if awaited:
        return state, effects
    if state.step is Step.AWAITING_UPLOADS:
        return _speaker_done(state, effects)
    return _enter(state, NEXT_STEP[state.step], effects)


def _enter(state: SessionState, step: Step, effects: list[Effect]) -> Transition:
    """Move to a cycle step: send its command, wait for its devices, arm its timers."""
    awaited = awaited_in(state, step)
    for key in [k for k in state.timers if k.startswith(GRACE_TIMER_PREFIX)]:
        if key.removeprefix(GRACE_TIMER_PREFIX) not in awaited:
            state = _disarm(state, key, effects)
    state = replace(state, step=step, awaited=awaited)
    effects.extend(payloads.command_pushes(state, awaited))
    state = _arm(state, STEP_TIMER, STEP_TIMEOUTS_S[step](state), effects)
    for device_id in sorted(awaited & state.disconnected):
        if GRACE_TIMER_PREFIX + device_id not in state.timers:
            state = _arm(state, GRACE_TIMER_PREFIX + device_id, state.timeouts.disconnect_grace_s, effects)
    return state, effects


def _speaker_done(state: SessionState, effects: list[Effect]) -> Transition:
    speaker = state.current_speaker
    assert speaker is not None
    effects.append(SendPush(state.members, events.SPEAKER_COMPLETE, payloads.speaker_complete(state, speaker)))
    state = replace(state, speaker_index=state.speaker_index + 1)
    if state.current_speaker is not None:
        state = replace(state, cycle=state.cycle + 1)
        return _enter(state, Step.AWAITING_READY, effects)
    state = replace(state, step=Step.ANALYZING, awaited=frozenset())
    effects.append(SendPush(state.members, events.SESSION_COMPLETE, payloads.session_complete(state)))
    effects.append(ReleaseLobby(state.lobby_id))
    effects.append(Analyze(state.job_id))
    state = _arm(state, STEP_TIMER, state.timeouts.analysis_s, effects)
    return state, effects


def _stop_cycle(state: SessionState, failure: Failure, error: SendPush) -> Transition:
    """The cycle fails: everyone hears why, and the admin has ``idle_s`` to retry the speaker."""
    effects: list[Effect] = [error]
    state = _disarm_graces(state, effects)
    state = replace(state, step=Step.FAILED, awaited=frozenset(), failure=failure)
    state = _arm(state, STEP_TIMER, state.timeouts.idle_s, effects)
    return state, effects


def _timeout_failure(state: SessionState, missing: Iterable[str], reason: str) -> Transition:
    missing_ids = [d for d in state.device_ids if d in set(missing)]
    data = payloads.step_timeout_error(state, missing_ids, reason)
    failure = Failure(STEP_TIMEOUT_CODE, state.step, data["message"], tuple(missing_ids))
    return _stop_cycle(state, failure, SendPush(state.members, events.ERROR, data))


def _end_cancelled(state: SessionState, reason: str, by: str | None) -> Transition:
    effects: list[Effect] = [
        SendPush(state.members, events.SESSION_CANCELLED, payloads.session_cancelled(state, reason, by)),
        ReleaseLobby(state.lobby_id),
    ]
    for key in list(state.timers):
        state = _disarm(state, key, effects)
    state = replace(state, step=Step.CANCELLED, awaited=frozenset(), cancel_reason=reason)
    return state, effects


# --- timers -------------------------------------------------------------------------------------------------


def _consume_timer(state: SessionState, message: TimerFired) -> SessionState | None:
    """The state without the fired timer; ``None`` if it was stale (cancelled or re-armed meanwhile)."""
    if state.timers.get(message.key) != message.generation:
        return None
    return replace(state, timers={k: g for k, g in state.timers.items() if k != message.key})


def _arm(state: SessionState, key: str, seconds: float, effects: list[Effect]) -> SessionState:
    generation = state.next_generation
    effects.append(StartTimer(key, seconds, generation))
    return replace(state, timers={**state.timers, key: generation}, next_generation=generation + 1)


def _disarm(state: SessionState, key: str, effects: list[Effect]) -> SessionState:
    if key not in state.timers:
        return state
    effects.append(CancelTimer(key))
    return replace(state, timers={k: g for k, g in state.timers.items() if k != key})


def _disarm_graces(state: SessionState, effects: list[Effect]) -> SessionState:
    for key in [k for k in state.timers if k.startswith(GRACE_TIMER_PREFIX)]:
        state = _disarm(state, key, effects)
    return state
