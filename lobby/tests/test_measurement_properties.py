"""Hypothesis drives random sessions: any order of messages, repeats, disconnects, timer firings.

Invariants after every step: only `AppError` is ever raised (and leaves the state as it was); a state
that is not final has a pending step timer; the timers the effects armed are exactly the state's; no
recording is counted twice; analysis starts only once every (speaker, microphone) pair has an upload.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sonalyze_lobby.measurement_protocol.effects import (
    CancelTimer,
    Effect,
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
from sonalyze_lobby.measurement_protocol.state import (
    CYCLE_STEPS,
    GRACE_TIMER_PREFIX,
    STEP_TIMER,
    SessionState,
    SignalInfo,
    Slot,
    Step,
    awaited_in,
    upload_name_for,
)
from sonalyze_lobby.measurement_protocol.transitions import (
    advance,
    new_session,
)
from sonalyze_protocol.errors import AppError

ADMIN = "admin"
SPEAKERS = (Slot("spk-a", "speaker_1"), Slot("spk-b", "speaker_2"))
MICS = (Slot("mic-a", "mic_1"), Slot("mic-b", "mic_2"), Slot("mic-c", "mic_3"))
DEVICES = [s.device_id for s in (*SPEAKERS, *MICS)]
ANYONE = [*DEVICES, ADMIN, "stranger"]
ALL_PAIRS = {(s.slot_id, m.slot_id) for s in SPEAKERS for m in MICS}
UPLOAD_NAMES = sorted(upload_name_for(s.slot_id, m.slot_id) for s in SPEAKERS for m in MICS)


def _expected_answer(state: SessionState, device_id: str) -> Message:
    """What an honest device sends in the current step."""
    match state.step:
        case Step.AWAITING_READY:
            return Ready(device_id)
        case Step.AWAITING_AUDIO:
            return SpeakerAudioReady(device_id)
        case Step.AWAITING_RECORDING:
            return RecordingStarted(device_id)
        case Step.AWAITING_PLAYBACK:
            return PlaybackComplete(device_id)
        case _:
            speaker = state.current_speaker
            mic = next(m for m in MICS if m.device_id == device_id)
            assert speaker is not None
            return RecordingUploaded(device_id, upload_name_for(speaker.slot_id, mic.slot_id))


class SessionMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.state, effects = new_session(
            session_id="s", lobby_id="l", job_id="j", admin_device_id=ADMIN, speakers=SPEAKERS,
            microphones=MICS, signal=SignalInfo("sig", "/v1/measurement/audio", 3.0),
        )  # fmt: skip
        self.armed: dict[str, int] = {}
        self.verifications: list[VerifyUpload] = []
        self.completions: list[SendPush] = []
        self._apply_effects(effects)

    def _apply_effects(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case StartTimer(key=key, generation=generation):
                    self.armed[key] = generation
                case CancelTimer(key=key):
                    assert key in self.armed, f"cancelled {key}, which was not armed"
                    del self.armed[key]
                case VerifyUpload():
                    self.verifications.append(effect)
                case SendPush(event="measurement.session_complete"):
                    self.completions.append(effect)

    def _send(self, message: Message) -> None:
        before = self.state
        try:
            self.state, effects = advance(self.state, message)
        except AppError:
            assert self.state is before
            return
        self._apply_effects(effects)

    # --- what the network and the devices may do ---

    @rule(sender=st.sampled_from(ANYONE), kind=st.integers(0, 8), name=st.sampled_from([*UPLOAD_NAMES, "x.wav"]))
    def any_message(self, sender: str, kind: int, name: str) -> None:
        message: Message = [
            StartSpeaker(sender), CancelSession(sender), Ready(sender), SpeakerAudioReady(sender),
            SpeakerAudioReady(sender, "ff" * 32), RecordingStarted(sender), PlaybackComplete(sender),
            RecordingUploaded(sender, name), ErrorReported(sender, "boom"),
        ][kind]  # fmt: skip
        self._send(message)

    def _honest_round(self, data: st.DataObject) -> None:
        """Some of the awaited devices answer (repeats included), then the pending uploads are confirmed."""
        if self.state.step in CYCLE_STEPS:
            awaited = sorted(awaited_in(self.state, self.state.step))
            for device_id in data.draw(st.lists(st.sampled_from(awaited), min_size=1, max_size=2 * len(awaited))):
                if self.state.step not in CYCLE_STEPS:
                    break
                if device_id in awaited_in(self.state, self.state.step):
                    self._send(_expected_answer(self.state, device_id))
        for check in list(self.verifications):
            self.verifications.remove(check)
            self._send(UploadVerified(check.device_id, check.upload_name, check.cycle))

    # a run only reaches the end if honest answers outweigh the chaos: three rules, one body
    @precondition(lambda self: self.state.step in CYCLE_STEPS)
    @rule(data=st.data())
    def honest_round(self, data: st.DataObject) -> None:
        self._honest_round(data)

    @precondition(lambda self: self.state.step in CYCLE_STEPS)
    @rule(data=st.data())
    def honest_round_again(self, data: st.DataObject) -> None:
        self._honest_round(data)

    @precondition(lambda self: self.state.step in CYCLE_STEPS)
    @rule(data=st.data())
    def honest_round_once_more(self, data: st.DataObject) -> None:
        self._honest_round(data)

    @precondition(lambda self: self.state.step in (Step.IDLE, Step.FAILED))
    @rule()
    def admin_starts(self) -> None:
        self._send(StartSpeaker(ADMIN))

    @precondition(lambda self: self.state.step in (Step.IDLE, Step.FAILED))
    @rule()
    def admin_retries(self) -> None:
        self._send(StartSpeaker(ADMIN))

    @precondition(lambda self: bool(self.verifications))
    @rule(data=st.data(), keep=st.booleans())
    def measurement_service_confirms(self, data: st.DataObject, keep: bool) -> None:
        check = data.draw(st.sampled_from(self.verifications))
        if not keep:
            self.verifications.remove(check)
        self._send(UploadVerified(check.device_id, check.upload_name, check.cycle))

    @rule(device=st.sampled_from(UPLOAD_NAMES), cycle=st.integers(0, 6))
    def stray_confirmation(self, device: str, cycle: int) -> None:
        mic = next(m for m in MICS if device.endswith(f"{m.slot_id}.wav"))
        self._send(UploadVerified(mic.device_id, device, cycle))

    @precondition(lambda self: bool(self.armed))
    @rule(data=st.data())
    def timer_fires(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.armed)))
        generation = self.armed.pop(key)
        self._send(TimerFired(key, generation))

    @rule(key=st.sampled_from([STEP_TIMER, *(GRACE_TIMER_PREFIX + d for d in DEVICES)]), generation=st.integers(0, 50))
    def stale_timer_fires(self, key: str, generation: int) -> None:
        if self.armed.get(key) == generation:
            del self.armed[key]
        self._send(TimerFired(key, generation))

    @rule(device=st.sampled_from([*DEVICES, "stranger"]), connected=st.booleans())
    def connection_changes(self, device: str, connected: bool) -> None:
        self._send(ConnectionChanged(device, connected))

    @rule(ok=st.booleans())
    def analysis_ends(self, ok: bool) -> None:
        self._send(AnalysisFinished({"ok": True}) if ok else AnalysisFailed("bad"))

    def teardown(self) -> None:
        event(f"ended in {self.state.step.value}")  # shown by --hypothesis-show-statistics

    # --- invariants ---

    @invariant()
    def pending_timer_unless_final(self) -> None:
        if self.state.is_final:
            assert self.state.timers == {}
        else:
            assert STEP_TIMER in self.state.timers

    @invariant()
    def effects_armed_exactly_the_states_timers(self) -> None:
        assert self.armed == dict(self.state.timers)

    @invariant()
    def no_recording_counted_twice(self) -> None:
        pairs = [(r.speaker_slot_id, r.mic_slot_id) for r in self.state.recordings]
        names = [r.upload_name for r in self.state.recordings]
        assert len(pairs) == len(set(pairs))
        assert len(names) == len(set(names))

    @invariant()
    def completion_only_with_every_pair(self) -> None:
        if self.state.step in (Step.ANALYZING, Step.COMPLETE):
            assert {(r.speaker_slot_id, r.mic_slot_id) for r in self.state.recordings} == ALL_PAIRS
        assert len(self.completions) <= 1
        for push in self.completions:
            assert {(r["speaker_slot_id"], r["mic_slot_id"]) for r in push.data["recordings"]} == ALL_PAIRS

    @invariant()
    def awaited_devices_belong_to_the_step(self) -> None:
        if self.state.step in CYCLE_STEPS:
            assert self.state.awaited
            assert self.state.awaited <= awaited_in(self.state, self.state.step)
        else:
            assert not self.state.awaited

    @invariant()
    def grace_timers_only_for_awaited_disconnected_devices(self) -> None:
        for key in self.state.timers:
            if key.startswith(GRACE_TIMER_PREFIX):
                device_id = key.removeprefix(GRACE_TIMER_PREFIX)
                assert self.state.step in CYCLE_STEPS
                assert device_id in self.state.awaited
                assert device_id in self.state.disconnected


SessionMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSessionMachine = SessionMachine.TestCase


def test_random_runs_reach_completion_sometimes() -> None:
    """The machine above is only meaningful if honest runs get through: check one does, end to end."""
    state, _ = new_session(
        session_id="s", lobby_id="l", job_id="j", admin_device_id=ADMIN, speakers=SPEAKERS,
        microphones=MICS, signal=SignalInfo("sig", "/v1/measurement/audio", 3.0),
    )  # fmt: skip
    state, _ = advance(state, StartSpeaker(ADMIN))
    for _ in range(100):
        if state.step not in CYCLE_STEPS:
            break
        device = sorted(state.awaited)[0]
        state, effects = advance(state, _expected_answer(state, device))
        for effect in effects:
            if isinstance(effect, VerifyUpload):
                state, _ = advance(state, UploadVerified(effect.device_id, effect.upload_name, effect.cycle))
    assert state.step is Step.ANALYZING
