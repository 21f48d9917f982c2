"""The 11-step measurement protocol as a pure state machine: ``advance(state, message) -> (state, effects)``.

No I/O, no clock, no awaits: `session_runner` carries out the effects (pushes, timers, calls to the
measurement service) and feeds their outcomes back as messages. A message that is not allowed raises an
`AppError` and leaves the state as it was (the caller still holds the old one).

One speaker cycle, with the devices each step waits for::

    idle/failed --start_speaker--> awaiting_ready        (speaker + microphones)  push start_measurement
                                   awaiting_audio        (speaker)                push request_audio
                                   awaiting_recording    (microphones)            push start_recording
                                   awaiting_playback     (speaker)                push start_playback
                                   awaiting_uploads      (microphones)            push stop_recording (one each)
                 -> speaker_complete, then the next speaker's awaiting_ready, or after the last one:
                                   analyzing  --analysis done/failed-->  complete

Every step that is not final has a pending ``step`` timer: the cycle steps fail with ``step_timeout``,
idle/failed expire the session (the admin never came back), analyzing gives up on the analysis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from sonalyze_protocol.errors import BadRequest, Forbidden, InvalidState


class Step(StrEnum):
    IDLE = "idle"
    AWAITING_READY = "awaiting_ready"
    AWAITING_AUDIO = "awaiting_audio"
    AWAITING_RECORDING = "awaiting_recording"
    AWAITING_PLAYBACK = "awaiting_playback"
    AWAITING_UPLOADS = "awaiting_uploads"
    FAILED = "failed"
    ANALYZING = "analyzing"
    COMPLETE = "complete"
    CANCELLED = "cancelled"


class Role(StrEnum):
    ADMIN = "admin"
    SPEAKER = "speaker"
    MICROPHONE = "microphone"


CYCLE_STEPS: Final = (
    Step.AWAITING_READY,
    Step.AWAITING_AUDIO,
    Step.AWAITING_RECORDING,
    Step.AWAITING_PLAYBACK,
    Step.AWAITING_UPLOADS,
)
FINAL_STEPS: Final = frozenset({Step.COMPLETE, Step.CANCELLED})
# while a session is in one of these it holds its lobby in measurement_running
HOLDING_STEPS: Final = frozenset({Step.IDLE, Step.FAILED, *CYCLE_STEPS})
STEP_TIMER: Final = "step"
GRACE_TIMER_PREFIX: Final = "grace:"
STEP_TIMEOUT_CODE: Final = "step_timeout"
UPLOAD_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,100}")
PHASE_UPDATE: Final = "measurement.phase_update"
ANALYSIS_RESULTS: Final = "measurement.analysis_results"


# --- the session -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    device_id: str
    slot_id: str


@dataclass(frozen=True, slots=True)
class Recording:
    speaker_slot_id: str
    mic_slot_id: str
    device_id: str
    upload_name: str

    def as_dict(self) -> dict[str, str]:
        return {
            "speaker_slot_id": self.speaker_slot_id,
            "mic_slot_id": self.mic_slot_id,
            "device_id": self.device_id,
            "upload_name": self.upload_name,
        }


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """The sweep every speaker plays: its id, where devices fetch it, its length and (if known) its hash."""

    signal_id: str
    audio_url: str
    duration_s: float
    audio_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each wait lasts; the playback wait is ``playback_margin_s`` plus the signal's length."""

    ready_s: float = 20.0
    audio_s: float = 30.0
    recording_s: float = 10.0
    playback_margin_s: float = 15.0
    upload_s: float = 60.0
    idle_s: float = 900.0
    analysis_s: float = 180.0
    disconnect_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the last cycle stopped; shown in the status until the next cycle starts."""

    code: str
    step: Step
    message: str
    device_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionState:
    session_id: str
    lobby_id: str
    job_id: str
    admin_device_id: str
    speakers: tuple[Slot, ...]
    microphones: tuple[Slot, ...]
    signal: SignalInfo
    timeouts: Timeouts = field(default_factory=Timeouts)
    # prefix of ``upload_endpoint`` (the lobby's PUBLIC_BASE_URL; empty: a path relative to the gateway)
    upload_base_url: str = ""
    step: Step = Step.IDLE
    speaker_index: int = 0
    cycle: int = 0
    awaited: frozenset[str] = frozenset()
    recordings: tuple[Recording, ...] = ()
    disconnected: frozenset[str] = frozenset()
    # timer key -> generation of the armed timer; a firing with another generation is stale
    timers: Mapping[str, int] = field(default_factory=dict)
    next_generation: int = 1
    failure: Failure | None = None
    results: Any = None
    analysis_error: str | None = None
    cancel_reason: str | None = None

    @property
    def current_speaker(self) -> Slot | None:
        if self.speaker_index < len(self.speakers):
            return self.speakers[self.speaker_index]
        return None

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Every speaker and microphone, in session order."""
        return tuple(s.device_id for s in (*self.speakers, *self.microphones))

    @property
    def members(self) -> tuple[str, ...]:
        """Who hears about the session: its devices and the admin."""
        return tuple(dict.fromkeys((*self.device_ids, self.admin_device_id)))

    @property
    def is_final(self) -> bool:
        return self.step in FINAL_STEPS

    @property
    def holds_lobby(self) -> bool:
        return self.step in HOLDING_STEPS

    def roles_of(self, device_id: str) -> frozenset[Role]:
        roles = set()
        if device_id == self.admin_device_id:
            roles.add(Role.ADMIN)
        if any(s.device_id == device_id for s in self.speakers):
            roles.add(Role.SPEAKER)
        if any(m.device_id == device_id for m in self.microphones):
            roles.add(Role.MICROPHONE)
        return frozenset(roles)


def upload_name_for(speaker_slot_id: str, mic_slot_id: str) -> str:
    """The file a microphone uploads for one speaker; both slot ids in it, so the job can tell them apart."""
    return f"{speaker_slot_id}__{mic_slot_id}.wav"


def app_upload_name_for(mic_device_id: str, speaker_slot_id: str) -> str:
    """The name the Sonalyze app gives the same file (its own convention, accepted beside ours)."""
    return f"recording_{mic_device_id}_{speaker_slot_id}.wav"


def is_valid_upload_name(name: str) -> bool:
    """The measurement service's rule: 1-100 of ``[A-Za-z0-9._-]``, not made only of dots."""
    return UPLOAD_NAME_PATTERN.fullmatch(name) is not None and name.strip(".") != ""


def new_session(
    *,
    session_id: str,
    lobby_id: str,
    job_id: str,
    admin_device_id: str,
    speakers: Iterable[Slot],
    microphones: Iterable[Slot],
    signal: SignalInfo,
    timeouts: Timeouts = Timeouts(),
    disconnected: Iterable[str] = (),
    upload_base_url: str = "",
) -> tuple[SessionState, list[Effect]]:
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


def check_line_up(speakers: tuple[Slot, ...], microphones: tuple[Slot, ...]) -> None:
    """At least one of each, no device twice, no slot id twice within a list; raises `BadRequest`."""
    if not speakers:
        raise BadRequest("data.speakers: at least one speaker is needed")
    if not microphones:
        raise BadRequest("data.microphones: at least one microphone is needed")
    for name, slots in (("speakers", speakers), ("microphones", microphones)):
        seen_devices: set[str] = set()
        seen_slots: set[str] = set()
        for slot in slots:
            if slot.device_id in seen_devices:
                raise BadRequest(f"data.{name}: device {slot.device_id} is listed twice")
            if slot.slot_id in seen_slots:
                raise BadRequest(f"data.{name}: slot {slot.slot_id} is listed twice")
            seen_devices.add(slot.device_id)
            seen_slots.add(slot.slot_id)
    both = {s.device_id for s in speakers} & {m.device_id for m in microphones}
    if both:
        raise BadRequest(f"device {sorted(both)[0]} cannot be both speaker and microphone")
    names = {upload_name_for(s.slot_id, m.slot_id) for s in speakers for m in microphones}
    if len(names) != len(speakers) * len(microphones):
        raise BadRequest("slot ids give two (speaker, microphone) pairs the same upload name; choose other slot ids")


# --- messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartSpeaker:
    device_id: str


@dataclass(frozen=True, slots=True)
class CancelSession:
    device_id: str
    reason: str | None = None


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
class DeviceError:
    device_id: str
    error_message: str
    error_code: str | None = None


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
# internal messages come from the runner, not from a device: they never raise, a stale one is ignored
InternalMessage = UploadVerified | TimerFired | ConnectionChanged | AnalysisFinished | AnalysisFailed
Message = CycleMessage | AdminMessage | DeviceError | InternalMessage


# --- effects -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Push:
    device_ids: tuple[str, ...]
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartTimer:
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


Effect = Push | StartTimer | CancelTimer | VerifyUpload | Analyze | ReleaseLobby


# --- the tables --------------------------------------------------------------------------------------

# which step a cycle message answers, and who may send it
EXPECTED_STEP: Final[dict[type, Step]] = {
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
SENDERS: Final[dict[Step, str]] = {
    Step.AWAITING_READY: "the current speaker or a microphone",
    Step.AWAITING_AUDIO: "the current speaker",
    Step.AWAITING_RECORDING: "a microphone",
    Step.AWAITING_PLAYBACK: "the current speaker",
    Step.AWAITING_UPLOADS: "a microphone",
}
# the steps each admin or device message is allowed in (cycle messages: see EXPECTED_STEP)
ALLOWED_STEPS: Final[dict[type, frozenset[Step]]] = {
    StartSpeaker: frozenset({Step.IDLE, Step.FAILED}),
    CancelSession: frozenset(HOLDING_STEPS | {Step.CANCELLED}),
    DeviceError: frozenset(HOLDING_STEPS),
}
WIRE_NAMES: Final[dict[type, str]] = {
    StartSpeaker: "start_speaker",
    CancelSession: "cancel_session",
    Ready: "ready",
    SpeakerAudioReady: "speaker_audio_ready",
    RecordingStarted: "recording_started",
    PlaybackComplete: "playback_complete",
    RecordingUploaded: "recording_uploaded",
    DeviceError: "error",
}


def _cycle_order(step: Step) -> int:
    return CYCLE_STEPS.index(step)


def awaited_in(state: SessionState, step: Step) -> frozenset[str]:
    """The devices ``step`` waits for in the current speaker's cycle."""
    speaker = state.current_speaker
    speaker_ids = frozenset({speaker.device_id}) if speaker else frozenset()
    mic_ids = frozenset(m.device_id for m in state.microphones)
    match step:
        case Step.AWAITING_READY:
            return speaker_ids | mic_ids
        case Step.AWAITING_AUDIO | Step.AWAITING_PLAYBACK:
            return speaker_ids
        case Step.AWAITING_RECORDING | Step.AWAITING_UPLOADS:
            return mic_ids
        case _:
            return frozenset()


# --- advance -----------------------------------------------------------------------------------------


def advance(state: SessionState, message: Message) -> tuple[SessionState, list[Effect]]:
    """The next state and what to do about it; raises `AppError` (state unchanged) for a refused message.

    Whenever the phase or one of its counters moved, everyone in the session also gets a
    ``measurement.phase_update`` (after the step's own pushes).
    """
    new_state, effects = _advance(state, message)
    progress = phase_progress(new_state)
    if progress != phase_progress(state):
        effects.append(Push(new_state.members, PHASE_UPDATE, progress))
    return new_state, effects


def _advance(state: SessionState, message: Message) -> tuple[SessionState, list[Effect]]:
    match message:
        case UploadVerified() | TimerFired() | ConnectionChanged() | AnalysisFinished() | AnalysisFailed():
            return _internal(state, message)
    device_id = message.device_id
    roles = state.roles_of(device_id)
    if not roles:
        raise Forbidden(f"device {device_id} is not part of measurement session {state.session_id}")
    match message:
        case StartSpeaker() | CancelSession():
            if Role.ADMIN not in roles:
                raise Forbidden(f"only the lobby admin may send {WIRE_NAMES[type(message)]}")
            _require_step(state, message)
            if isinstance(message, StartSpeaker):
                return _start_cycle(state, retry=state.step is Step.FAILED)
            return _cancel(state, message)
        case DeviceError():
            _require_step(state, message)
            return _device_error(state, message)
        case _:
            return _cycle_message(state, message)


def _require_step(state: SessionState, message: Message) -> None:
    if state.step not in ALLOWED_STEPS[type(message)]:
        raise _invalid_state(state, message)


def _invalid_state(state: SessionState, message: Message) -> InvalidState:
    name = WIRE_NAMES[type(message)]
    return InvalidState(
        f"measurement.{name} does not fit: the session is in step {state.step.value}", step=state.step.value
    )


def _cycle_message(state: SessionState, message: CycleMessage) -> tuple[SessionState, list[Effect]]:
    if isinstance(message, RecordingUploaded):
        counted = next((r for r in state.recordings if r.upload_name == message.upload_name), None)
        if counted is not None:
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
            return state, []  # a repeat of an upload already counted, whatever the step
    expected = EXPECTED_STEP[type(message)]
    if state.step not in CYCLE_STEPS:
        raise _invalid_state(state, message)
    if message.device_id not in awaited_in(state, expected):
        raise Forbidden(
            f"measurement.{WIRE_NAMES[type(message)]} must come from {SENDERS[expected]} of this cycle, "
            f"not from {message.device_id}"
        )
    if _cycle_order(expected) < _cycle_order(state.step):
        return state, []  # a late repeat of an answer the cycle has already moved past
    if expected is not state.step:
        raise _invalid_state(state, message)
    if message.device_id not in state.awaited:
        return state, []  # a repeat within the step
    match message:
        case SpeakerAudioReady(audio_hash=audio_hash) if audio_hash is not None:
            expected_hash = state.signal.audio_sha256
            if expected_hash is not None and _normal_hash(audio_hash) != expected_hash.lower():
                raise BadRequest(
                    f"data.audio_hash does not match signal {state.signal.signal_id}; download audio_url again"
                )
        case RecordingUploaded(upload_name=upload_name):
            return state, [_verify_upload(state, message.device_id, upload_name)]
    return _answered(state, message.device_id)


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
        mic_device_id,
        upload_name,
        state.cycle,
        speaker_slot_id=speaker.slot_id,
        mic_slot_id=mic.slot_id,
    )


def _normal_hash(value: str) -> str:
    value = value.strip().lower()
    return value.removeprefix("sha256:")


def _answered(state: SessionState, device_id: str) -> tuple[SessionState, list[Effect]]:
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


def _start_cycle(state: SessionState, *, retry: bool) -> tuple[SessionState, list[Effect]]:
    effects: list[Effect] = []
    speaker = state.current_speaker
    assert speaker is not None
    if retry:  # the speaker is measured again from the start; its partial uploads will be overwritten
        state = replace(state, recordings=tuple(r for r in state.recordings if r.speaker_slot_id != speaker.slot_id))
    state = replace(state, cycle=state.cycle + 1, failure=None)
    return _enter(state, Step.AWAITING_READY, effects)


def _enter(state: SessionState, step: Step, effects: list[Effect]) -> tuple[SessionState, list[Effect]]:
    """Move to a cycle step: send its command, wait for its devices, arm its timers."""
    awaited = awaited_in(state, step)
    for key in [k for k in state.timers if k.startswith(GRACE_TIMER_PREFIX)]:
        if key.removeprefix(GRACE_TIMER_PREFIX) not in awaited:
            state = _disarm(state, key, effects)
    state = replace(state, step=step, awaited=awaited)
    effects.extend(command_pushes(state, awaited))
    state = _arm(state, STEP_TIMER, _step_timeout_s(state, step), effects)
    for device_id in sorted(awaited & state.disconnected):
        if GRACE_TIMER_PREFIX + device_id not in state.timers:
            state = _arm(state, GRACE_TIMER_PREFIX + device_id, state.timeouts.disconnect_grace_s, effects)
    return state, effects


def _step_timeout_s(state: SessionState, step: Step) -> float:
    t = state.timeouts
    match step:
        case Step.AWAITING_READY:
            return t.ready_s
        case Step.AWAITING_AUDIO:
            return t.audio_s
        case Step.AWAITING_RECORDING:
            return t.recording_s
        case Step.AWAITING_PLAYBACK:
            return t.playback_margin_s + state.signal.duration_s
        case Step.AWAITING_UPLOADS:
            return t.upload_s
        case _:
            raise ValueError(f"step {step} has no cycle timeout")


def command_pushes(state: SessionState, device_ids: Iterable[str]) -> list[Push]:
    """The command the current step waits on, addressed to ``device_ids`` (also used to re-send it)."""
    targets = tuple(d for d in state.device_ids if d in set(device_ids))
    if not targets:
        return []
    speaker = state.current_speaker
    assert speaker is not None
    base = {"session_id": state.session_id, "speaker_slot_id": speaker.slot_id}
    match state.step:
        case Step.AWAITING_READY:
            data = {
                **base,
                "job_id": state.job_id,
                "speaker_device_id": speaker.device_id,
                "speaker_index": state.speaker_index,
                "speaker_count": len(state.speakers),
                "microphone_slot_ids": [m.slot_id for m in state.microphones],
                "signal_id": state.signal.signal_id,
                "current_speaker_slot_id": speaker.slot_id,
            }
            return [Push(targets, "measurement.start_measurement", data)]
        case Step.AWAITING_AUDIO:
            data = {**base, "audio_url": state.signal.audio_url, "signal_id": state.signal.signal_id}
            if state.signal.audio_sha256 is not None:
                data["expected_hash"] = state.signal.audio_sha256
            return [Push(targets, "measurement.request_audio", data)]
        case Step.AWAITING_RECORDING:
            data = {
                **base,
                "signal_id": state.signal.signal_id,
                "audio_url": state.signal.audio_url,
                "signal_duration_s": state.signal.duration_s,
            }
            return [Push(targets, "measurement.start_recording", data)]
        case Step.AWAITING_PLAYBACK:
            return [Push(targets, "measurement.start_playback", {**base, "signal_id": state.signal.signal_id})]
        case Step.AWAITING_UPLOADS:
            pushes = []
            for mic in state.microphones:
                if mic.device_id in targets:
                    name = upload_name_for(speaker.slot_id, mic.slot_id)
                    data = {
                        **base,
                        "mic_slot_id": mic.slot_id,
                        "job_id": state.job_id,
                        "upload_name": name,
                        "upload_url": f"/v1/jobs/{state.job_id}/uploads/{name}",
                        "upload_endpoint": upload_endpoint(state),
                    }
                    pushes.append(Push((mic.device_id,), "measurement.stop_recording", data))
            return pushes
        case _:
            return []


def upload_endpoint(state: SessionState) -> str:
    """The uploads base of the session's job (the app appends its upload name)."""
    return f"{state.upload_base_url}/v1/jobs/{state.job_id}/uploads/"


def _speaker_done(state: SessionState, effects: list[Effect]) -> tuple[SessionState, list[Effect]]:
    speaker = state.current_speaker
    assert speaker is not None
    next_index = state.speaker_index + 1
    next_speaker = state.speakers[next_index] if next_index < len(state.speakers) else None
    mine = [r.as_dict() for r in state.recordings if r.speaker_slot_id == speaker.slot_id]
    effects.append(
        Push(
            state.members,
            "measurement.speaker_complete",
            {
                "session_id": state.session_id,
                "speaker_slot_id": speaker.slot_id,
                "speaker_index": state.speaker_index,
                "recordings": mine,
                "next_speaker_slot_id": next_speaker.slot_id if next_speaker else None,
                "completed_speaker_slot_id": speaker.slot_id,
                "remaining_speakers": len(state.speakers) - next_index,
                "remaining_speaker_slot_ids": [s.slot_id for s in state.speakers[next_index:]],
            },
        )
    )
    state = replace(state, speaker_index=next_index)
    if next_speaker is not None:
        state = replace(state, cycle=state.cycle + 1)
        return _enter(state, Step.AWAITING_READY, effects)
    state = replace(state, step=Step.ANALYZING, awaited=frozenset())
    effects.append(
        Push(
            state.members,
            "measurement.session_complete",
            {
                "session_id": state.session_id,
                "job_id": state.job_id,
                "recordings": recordings_list(state),
                "completed_speakers": [s.slot_id for s in state.speakers],
            },
        )
    )
    effects.append(ReleaseLobby(state.lobby_id))
    effects.append(Analyze(state.job_id))
    state = _arm(state, STEP_TIMER, state.timeouts.analysis_s, effects)
    return state, effects


def recordings_list(state: SessionState) -> list[dict[str, str]]:
    """Counted recordings in speaker order, then microphone order."""
    speaker_rank = {s.slot_id: i for i, s in enumerate(state.speakers)}
    mic_rank = {m.slot_id: i for i, m in enumerate(state.microphones)}
    ordered = sorted(state.recordings, key=lambda r: (speaker_rank[r.speaker_slot_id], mic_rank[r.mic_slot_id]))
    return [r.as_dict() for r in ordered]


def _stop_cycle(state: SessionState, failure: Failure, data: dict[str, Any]) -> tuple[SessionState, list[Effect]]:
    """The cycle fails: everyone hears why, and the admin has ``idle_s`` to retry the speaker."""
    effects: list[Effect] = [Push(state.members, "measurement.error", data)]
    state = _disarm_graces(state, effects)
    state = replace(state, step=Step.FAILED, awaited=frozenset(), failure=failure)
    state = _arm(state, STEP_TIMER, state.timeouts.idle_s, effects)
    return state, effects


def _timeout_failure(state: SessionState, missing: Iterable[str], reason: str) -> tuple[SessionState, list[Effect]]:
    missing_ids = [d for d in state.device_ids if d in set(missing)]
    speaker = state.current_speaker
    message = f"step {state.step.value} timed out ({reason}) waiting for {', '.join(missing_ids)}"
    data = {
        "session_id": state.session_id,
        "code": STEP_TIMEOUT_CODE,
        "step": state.step.value,
        "missing_device_ids": missing_ids,
        "speaker_slot_id": speaker.slot_id if speaker else None,
        "reason": reason,
        "message": message,
        "error_device_id": missing_ids[0] if missing_ids else None,
        "error_message": message,
        "error_code": STEP_TIMEOUT_CODE,
    }
    return _stop_cycle(state, Failure(STEP_TIMEOUT_CODE, state.step, message, tuple(missing_ids)), data)


def _device_error(state: SessionState, message: DeviceError) -> tuple[SessionState, list[Effect]]:
    speaker = state.current_speaker
    data = {
        "session_id": state.session_id,
        "code": "device_error",
        "step": state.step.value,
        "device_id": message.device_id,
        "error_device_id": message.device_id,
        "error_code": message.error_code or "device_error",
        "error_message": message.error_message,
        "speaker_slot_id": speaker.slot_id if speaker else None,
        "message": f"device {message.device_id} reported: {message.error_message}",
    }
    if state.step not in CYCLE_STEPS:  # nothing runs: everyone hears it, nothing stops
        return state, [Push(state.members, "measurement.error", data)]
    failure = Failure("device_error", state.step, data["message"], (message.device_id,))
    return _stop_cycle(state, failure, data)


def _cancel(state: SessionState, message: CancelSession) -> tuple[SessionState, list[Effect]]:
    if state.step is Step.CANCELLED:
        return state, []
    return _end_cancelled(state, message.reason or "cancelled by the admin", message.device_id)


def _end_cancelled(state: SessionState, reason: str, by: str | None) -> tuple[SessionState, list[Effect]]:
    effects: list[Effect] = [
        Push(
            state.members,
            "measurement.session_cancelled",
            {"session_id": state.session_id, "reason": reason, "cancelled_by": by},
        ),
        ReleaseLobby(state.lobby_id),
    ]
    for key in list(state.timers):
        state = _disarm(state, key, effects)
    state = replace(state, step=Step.CANCELLED, awaited=frozenset(), cancel_reason=reason)
    return state, effects


def _internal(state: SessionState, message: InternalMessage) -> tuple[SessionState, list[Effect]]:
    match message:
        case TimerFired(key=key, generation=generation):
            if state.timers.get(key) != generation:
                return state, []  # cancelled or re-armed meanwhile
            state = replace(state, timers={k: g for k, g in state.timers.items() if k != key})
            return _timer_fired(state, key)
        case ConnectionChanged(device_id=device_id, connected=connected):
            return _connection_changed(state, device_id, connected)
        case UploadVerified(device_id=device_id, upload_name=upload_name, cycle=cycle):
            fits = (
                state.step is Step.AWAITING_UPLOADS
                and cycle == state.cycle
                and device_id in state.awaited
                and _names_this_pair(state, device_id, upload_name)
            )
            if not fits:
                return state, []
            speaker = state.current_speaker
            assert speaker is not None
            mic = next(m for m in state.microphones if m.device_id == device_id)
            recording = Recording(speaker.slot_id, mic.slot_id, device_id, upload_name)
            state = replace(state, recordings=(*state.recordings, recording))
            return _answered(state, device_id)
        case AnalysisFinished(results=results, summary=summary):
            if state.step is not Step.ANALYZING:
                return state, []
            data = {"session_id": state.session_id, "job_id": state.job_id, "results": results}
            if summary is not None:
                data["summary"] = summary
            effects: list[Effect] = [Push(state.members, "measurement.analysis_complete", data)]
            effects.extend(_app_results_pushes(state, results))
            state = _disarm(replace(state, step=Step.COMPLETE, results=results), STEP_TIMER, effects)
            return state, effects
        case AnalysisFailed(reason=reason):
            if state.step is not Step.ANALYZING:
                return state, []
            return _analysis_failed(state, reason)
    raise AssertionError(f"unhandled internal message {message!r}")  # pragma: no cover


def _app_results_pushes(state: SessionState, results: Any) -> list[Push]:
    """One ``measurement.analysis_results`` per counted recording whose entry carries ``app_results``
    (the app's shape): every phone sees results even when the host never relays them."""
    entries = results.get("results") if isinstance(results, dict) else results
    if not isinstance(entries, list):
        return []
    by_name = {e.get("upload_name"): e for e in entries if isinstance(e, dict)}
    pushes = []
    for recording in recordings_list(state):
        entry = by_name.get(recording["upload_name"])
        app_results = entry.get("app_results") if entry else None
        if not isinstance(app_results, dict):
            continue
        data = {
            "session_id": state.session_id,
            "job_id": state.job_id,
            "results": app_results,
            "recording_upload": recording["upload_name"],
            **recording,
            "source": "automatic",
        }
        pushes.append(Push(state.members, ANALYSIS_RESULTS, data))
    return pushes


def _analysis_failed(state: SessionState, reason: str) -> tuple[SessionState, list[Effect]]:
    effects: list[Effect] = [
        Push(
            state.members,
            "measurement.error",
            {
                "session_id": state.session_id,
                "job_id": state.job_id,
                "code": "analysis_failed",
                "step": Step.ANALYZING.value,
                "message": f"the analysis of job {state.job_id} failed: {reason}",
                "reason": reason,
                "error_device_id": None,
                "error_message": f"the analysis of job {state.job_id} failed: {reason}",
                "error_code": "analysis_failed",
            },
        )
    ]
    state = _disarm(replace(state, step=Step.COMPLETE, analysis_error=reason), STEP_TIMER, effects)
    return state, effects


def _timer_fired(state: SessionState, key: str) -> tuple[SessionState, list[Effect]]:
    if key.startswith(GRACE_TIMER_PREFIX):
        device_id = key.removeprefix(GRACE_TIMER_PREFIX)
        if state.step in CYCLE_STEPS and device_id in state.awaited and device_id in state.disconnected:
            return _timeout_failure(state, state.awaited, f"device {device_id} disconnected and did not come back")
        return state, []
    match state.step:
        case step if step in CYCLE_STEPS:
            return _timeout_failure(state, state.awaited, "no answer in time")
        case Step.IDLE | Step.FAILED:
            return _end_cancelled(state, "idle_timeout: no start_speaker in time", None)
        case Step.ANALYZING:
            return _analysis_failed(state, "the analysis did not finish in time")
    return state, []


def _connection_changed(state: SessionState, device_id: str, connected: bool) -> tuple[SessionState, list[Effect]]:
    if device_id not in state.device_ids or state.is_final:
        return state, []
    effects: list[Effect] = []
    key = GRACE_TIMER_PREFIX + device_id
    if connected:
        was_gone = device_id in state.disconnected
        state = _disarm(replace(state, disconnected=state.disconnected - {device_id}), key, effects)
        if was_gone and device_id in state.awaited:
            effects.extend(command_pushes(state, {device_id}))
        if was_gone:  # it may have missed phase updates while away
            effects.append(Push((device_id,), PHASE_UPDATE, phase_progress(state)))
        return state, effects
    state = replace(state, disconnected=state.disconnected | {device_id})
    if state.step in CYCLE_STEPS and device_id in state.awaited and key not in state.timers:
        state = _arm(state, key, state.timeouts.disconnect_grace_s, effects)
    return state, effects


# --- timers ------------------------------------------------------------------------------------------


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


# --- views -------------------------------------------------------------------------------------------

# step -> (phase, phase_description) of ``measurement.phase_update``; the app's timeline follows ``phase``
PHASES: Final[dict[Step, tuple[str, str]]] = {
    Step.IDLE: ("waiting_for_start", "Waiting for the host to start the next speaker"),
    Step.AWAITING_READY: ("waiting_for_ready", "Waiting for the speaker and every microphone to be ready"),
    Step.AWAITING_AUDIO: ("audio_requested", "The speaker is downloading the measurement signal"),
    Step.AWAITING_RECORDING: ("recording", "The microphones are starting to record"),
    Step.AWAITING_PLAYBACK: ("playing", "The speaker is playing the sweep"),
    Step.AWAITING_UPLOADS: ("uploading", "The microphones are uploading their recordings"),
    Step.FAILED: ("failed", "This speaker's cycle failed; the host may retry it"),
    Step.ANALYZING: ("processing", "Analysing the recordings"),
    Step.COMPLETE: ("completed", "The measurement is complete"),
    Step.CANCELLED: ("cancelled", "The measurement was cancelled"),
}


def phase_progress(state: SessionState) -> dict[str, Any]:
    """The data of ``measurement.phase_update``: the phase and how far each wait has come."""
    phase, description = PHASES[state.step]
    speaker = state.current_speaker
    mic_ids = {m.device_id for m in state.microphones}
    order = _cycle_order(state.step) if state.step in CYCLE_STEPS else -1
    ready_total = 1 + len(mic_ids)
    if state.step is Step.AWAITING_READY:
        ready_count = ready_total - len(state.awaited)
    else:
        ready_count = ready_total if order > 0 else 0
    if state.step is Step.AWAITING_RECORDING:
        started = len(mic_ids - state.awaited)
    else:
        started = len(mic_ids) if order > _cycle_order(Step.AWAITING_RECORDING) else 0
    uploads = sum(1 for r in state.recordings if speaker is not None and r.speaker_slot_id == speaker.slot_id)
    return {
        "session_id": state.session_id,
        "job_id": state.job_id,
        "phase": phase,
        "phase_description": description,
        "step": state.step.value,
        "current_speaker_slot_id": speaker.slot_id if speaker else None,
        "speaker_device_id": speaker.device_id if speaker else None,
        "speaker_index": state.speaker_index,
        "total_speakers": len(state.speakers),
        "cycle": state.cycle,
        "devices_ready": ready_count,
        "total_devices": ready_total,
        "recordings_started": started,
        "total_microphones": len(mic_ids),
        "uploads_received": uploads,
        "recordings_received": len(state.recordings),
        "total_recordings": len(state.speakers) * len(mic_ids),
    }


def status(state: SessionState) -> dict[str, Any]:
    """The full state as the wire shows it (``measurement.session_status`` and ``create_session``)."""
    speaker = state.current_speaker
    failure = state.failure
    return {
        "session_id": state.session_id,
        "lobby_id": state.lobby_id,
        "job_id": state.job_id,
        "state": state.step.value,
        "step": state.step.value,
        "speakers": [{"device_id": s.device_id, "slot_id": s.slot_id} for s in state.speakers],
        "microphones": [{"device_id": m.device_id, "slot_id": m.slot_id} for m in state.microphones],
        "current_speaker": {"device_id": speaker.device_id, "slot_id": speaker.slot_id} if speaker else None,
        "speaker_index": state.speaker_index,
        "cycle": state.cycle,
        "awaiting_device_ids": [d for d in state.device_ids if d in state.awaited],
        "disconnected_device_ids": [d for d in state.device_ids if d in state.disconnected],
        "recordings": recordings_list(state),
        "signal_id": state.signal.signal_id,
        "audio_url": state.signal.audio_url,
        # the app's name for the signal's length (it plans its recording with it)
        "audio_duration_seconds": state.signal.duration_s,
        "last_error": (
            {
                "code": failure.code,
                "step": failure.step.value,
                "message": failure.message,
                "device_ids": list(failure.device_ids),
            }
            if failure
            else None
        ),
        "results": state.results,
        "analysis_error": state.analysis_error,
        "cancel_reason": state.cancel_reason,
    }
