"""The pure measurement state machine: every (step, message) pair, then the paths through a session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

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
from sonalyze_lobby.measurement_protocol.payloads import (
    status,
)
from sonalyze_lobby.measurement_protocol.state import (
    STEP_TIMER,
    SessionState,
    SignalInfo,
    Slot,
    Step,
    Timeouts,
    app_upload_name_for,
    upload_name_for,
)
from sonalyze_lobby.measurement_protocol.transitions import STAY, TABLE, Outcome, advance, new_session
from sonalyze_protocol.errors import AppError, ErrorCode
from sonalyze_protocol.measurement_events import PHASE_UPDATE, PUSH_PAYLOADS, fits_payload

ADMIN = "admin"
SPK1, SPK2 = "spk-a", "spk-b"
MIC1, MIC2 = "mic-a", "mic-b"
OUTSIDER = "stranger"
SHA = "ab" * 32
TIMEOUTS = Timeouts(ready_s=5, audio_s=6, recording_s=7, playback_margin_s=8, upload_s=9, idle_s=100,
                    analysis_s=50, disconnect_grace_s=3)  # fmt: skip
SIGNAL = SignalInfo("sig-1", "/v1/measurement/audio?sample_rate=48000", duration_s=12.5, audio_sha256=SHA)


def fresh() -> SessionState:
    state, _ = new_session(
        session_id="s1",
        lobby_id="l1",
        job_id="j1",
        admin_device_id=ADMIN,
        speakers=[Slot(SPK1, "speaker_1"), Slot(SPK2, "speaker_2")],
        microphones=[Slot(MIC1, "mic_1"), Slot(MIC2, "mic_2")],
        signal=SIGNAL,
        timeouts=TIMEOUTS,
    )
    return state


def feed(state: SessionState, *messages: Message) -> tuple[SessionState, list[Effect]]:
    effects: list[Effect] = []
    for message in messages:
        state, new = advance(state, message)
        effects.extend(new)
    return state, effects


def cycle_to_uploads(state: SessionState, speaker: str) -> SessionState:
    state, _ = feed(
        state,
        Ready(speaker), Ready(MIC1), Ready(MIC2),
        SpeakerAudioReady(speaker),
        RecordingStarted(MIC1), RecordingStarted(MIC2),
        PlaybackComplete(speaker),
    )  # fmt: skip
    return state


def upload_all(state: SessionState, speaker_slot: str) -> tuple[SessionState, list[Effect]]:
    messages: list[Message] = []
    for device, mic_slot in ((MIC1, "mic_1"), (MIC2, "mic_2")):
        name = upload_name_for(speaker_slot, mic_slot)
        messages += [RecordingUploaded(device, name), UploadVerified(device, name, state.cycle)]
    return feed(state, *messages)


def state_at(step: Step) -> SessionState:
    state = fresh()
    if step is Step.IDLE:
        return state
    if step is Step.CANCELLED:
        return feed(state, CancelSession(ADMIN))[0]
    state, _ = feed(state, StartSpeaker(ADMIN))
    path = {
        Step.AWAITING_READY: [],
        Step.AWAITING_AUDIO: [Ready(SPK1), Ready(MIC1), Ready(MIC2)],
        Step.AWAITING_RECORDING: [Ready(SPK1), Ready(MIC1), Ready(MIC2), SpeakerAudioReady(SPK1)],
        Step.AWAITING_PLAYBACK: [
            Ready(SPK1),
            Ready(MIC1),
            Ready(MIC2),
            SpeakerAudioReady(SPK1),
            RecordingStarted(MIC1),
            RecordingStarted(MIC2),
        ],
        Step.FAILED: [TimerFired(STEP_TIMER, state.timers[STEP_TIMER])],
    }
    if step in path:
        return feed(state, *path[step])[0]
    state = cycle_to_uploads(state, SPK1)
    if step is Step.AWAITING_UPLOADS:
        return state
    state, _ = upload_all(state, "speaker_1")
    state = cycle_to_uploads(state, SPK2)
    state, _ = upload_all(state, "speaker_2")
    assert state.step is Step.ANALYZING
    if step is Step.ANALYZING:
        return state
    assert step is Step.COMPLETE
    return feed(state, AnalysisFinished({"pairs": []}))[0]


def pushes(effects: list[Effect], event: str | None = None) -> list[SendPush]:
    """The pushes named ``event``; without it every push but the phase updates (tested on their own)."""
    return [
        e for e in effects
        if isinstance(e, SendPush) and (e.event == event if event is not None else e.event != PHASE_UPDATE)
    ]  # fmt: skip


# one message of each kind, as the walk sends it in every step (internal ones fit the state they meet)
MESSAGES: dict[str, Callable[[SessionState], Message]] = {
    "start_speaker": lambda _: StartSpeaker(ADMIN),
    "cancel_session": lambda _: CancelSession(ADMIN),
    "ready/speaker": lambda _: Ready(SPK1),
    "ready/mic": lambda _: Ready(MIC1),
    "speaker_audio_ready": lambda _: SpeakerAudioReady(SPK1),
    "recording_started": lambda _: RecordingStarted(MIC1),
    "playback_complete": lambda _: PlaybackComplete(SPK1),
    "recording_uploaded": lambda _: RecordingUploaded(MIC1, app_upload_name_for(MIC1, "speaker_1")),  # never counted
    "repeated_upload": lambda _: RecordingUploaded(MIC1, "speaker_1__mic_1.wav"),  # counted from analyzing on
    "error": lambda _: ErrorReported(MIC1, "mic broke", "mic_failure"),
    "upload_verified": lambda s: UploadVerified(MIC1, "speaker_1__mic_1.wav", s.cycle),
    "step_timer": lambda s: TimerFired(STEP_TIMER, s.timers.get(STEP_TIMER, 10_000)),
    "stale_timer": lambda _: TimerFired(STEP_TIMER, 10_000),
    "disconnected": lambda _: ConnectionChanged(MIC1, False),
    "analysis_finished": lambda _: AnalysisFinished({"pairs": []}),
    "analysis_failed": lambda _: AnalysisFailed("no chirp"),
}
DEVICE_NAMES = [n for n in MESSAGES if isinstance(MESSAGES[n](fresh()), DEVICE_MESSAGES)]
CASES = [(step, name) for step in Step for name in MESSAGES]


class TestTransitionTable:
    """Walk `TABLE`: every (step, message) does what its rule says."""

    def test_table_covers_every_step_and_message(self) -> None:
        assert set(TABLE) == set(Step)
        assert all(set(row) == {*DEVICE_MESSAGES, *INTERNAL_MESSAGES} for row in TABLE.values())

    def test_every_message_kind_is_walked(self) -> None:
        assert {type(make(fresh())) for make in MESSAGES.values()} == {*DEVICE_MESSAGES, *INTERNAL_MESSAGES}

    @pytest.mark.parametrize(("step", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
    def test_transition_follows_the_table(self, step: Step, name: str) -> None:
        state = state_at(step)
        assert state.step is step
        message = MESSAGES[name](state)
        rule = TABLE[step][type(message)]
        if name == "repeated_upload" and step in (Step.ANALYZING, Step.COMPLETE):
            assert advance(state, message) == (state, [])  # a repeat of a counted upload, before the table
            return
        if rule.outcome is Outcome.REFUSED:
            with pytest.raises(AppError) as caught:
                advance(state, message)
            assert caught.value.code is ErrorCode.INVALID_STATE
            assert f"step {step.value}" in caught.value.message
            assert caught.value.extra["step"] == step.value
            return
        new_state, effects = advance(state, message)
        if rule.outcome is Outcome.IGNORED:
            assert (new_state, effects) == (state, [])
            return
        assert (STAY if new_state.step is step else new_state.step) in rule.to
        assert {p.event for p in pushes(effects)} <= set(rule.pushes)
        if not new_state.is_final:
            assert STEP_TIMER in new_state.timers

    @pytest.mark.parametrize(
        ("step", "name", "expected"),
        [
            (Step.IDLE, "start_speaker", Step.AWAITING_READY),
            (Step.FAILED, "start_speaker", Step.AWAITING_READY),
            (Step.AWAITING_READY, "ready/mic", Step.AWAITING_READY),  # the others are still awaited
            (Step.AWAITING_AUDIO, "speaker_audio_ready", Step.AWAITING_RECORDING),
            (Step.AWAITING_PLAYBACK, "playback_complete", Step.AWAITING_UPLOADS),
            (Step.AWAITING_RECORDING, "error", Step.FAILED),
            (Step.AWAITING_UPLOADS, "step_timer", Step.FAILED),
            (Step.IDLE, "step_timer", Step.CANCELLED),
            (Step.ANALYZING, "step_timer", Step.COMPLETE),
            (Step.ANALYZING, "analysis_finished", Step.COMPLETE),
            (Step.AWAITING_UPLOADS, "cancel_session", Step.CANCELLED),
        ],
    )
    def test_main_moves(self, step: Step, name: str, expected: Step) -> None:
        state = state_at(step)
        assert advance(state, MESSAGES[name](state))[0].step is expected

    @pytest.mark.parametrize(
        ("step", "name"),
        [
            (Step.IDLE, "ready/speaker"),
            (Step.AWAITING_READY, "start_speaker"),
            (Step.AWAITING_AUDIO, "playback_complete"),
            (Step.ANALYZING, "cancel_session"),
            (Step.COMPLETE, "error"),
            (Step.CANCELLED, "recording_uploaded"),  # nothing counted before the cancel
        ],
    )
    def test_messages_out_of_step_are_refused(self, step: Step, name: str) -> None:
        assert TABLE[step][type(MESSAGES[name](fresh()))].outcome is Outcome.REFUSED
        with pytest.raises(AppError) as caught:
            advance(state_at(step), MESSAGES[name](state_at(step)))
        assert caught.value.code is ErrorCode.INVALID_STATE

    @pytest.mark.parametrize(
        ("step", "name"),
        [
            (Step.AWAITING_AUDIO, "ready/speaker"),  # late repeats
            (Step.AWAITING_UPLOADS, "playback_complete"),
            (Step.ANALYZING, "repeated_upload"),  # speaker_1__mic_1.wav is counted by then
            (Step.CANCELLED, "cancel_session"),
            (Step.AWAITING_READY, "stale_timer"),
        ],
    )
    def test_repeats_and_stale_messages_change_nothing(self, step: Step, name: str) -> None:
        state = state_at(step)
        assert advance(state, MESSAGES[name](state)) == (state, [])

    @pytest.mark.parametrize("step", list(Step))
    @pytest.mark.parametrize("name", DEVICE_NAMES)
    def test_outsider_is_forbidden_in_every_step(self, step: Step, name: str) -> None:
        message = replace(MESSAGES[name](fresh()), device_id=OUTSIDER)  # type: ignore[type-var]
        with pytest.raises(AppError) as caught:
            advance(state_at(step), message)
        assert caught.value.code is ErrorCode.FORBIDDEN

    @pytest.mark.parametrize("message", [StartSpeaker(SPK1), CancelSession(MIC1)])
    def test_admin_commands_from_a_device_are_forbidden(self, message: Message) -> None:
        with pytest.raises(AppError) as caught:
            advance(state_at(Step.IDLE), message)
        assert caught.value.code is ErrorCode.FORBIDDEN

    @pytest.mark.parametrize(
        ("step", "message"),
        [
            (Step.AWAITING_READY, Ready(SPK2)),  # not this cycle's speaker
            (Step.AWAITING_AUDIO, SpeakerAudioReady(MIC1)),
            (Step.AWAITING_RECORDING, RecordingStarted(SPK1)),
            (Step.AWAITING_PLAYBACK, PlaybackComplete(SPK2)),
            (Step.AWAITING_UPLOADS, RecordingUploaded(SPK1, "speaker_1__mic_1.wav")),
            (Step.AWAITING_READY, Ready(ADMIN)),
        ],
    )
    def test_wrong_role_in_a_cycle_is_forbidden(self, step: Step, message: Message) -> None:
        with pytest.raises(AppError) as caught:
            advance(state_at(step), message)
        assert caught.value.code is ErrorCode.FORBIDDEN

    @pytest.mark.parametrize("step", list(Step))
    def test_internal_messages_never_raise(self, step: Step) -> None:
        state = state_at(step)
        for message in (
            TimerFired(STEP_TIMER, 10_000),
            TimerFired("grace:" + MIC1, 10_000),
            ConnectionChanged(MIC1, False),
            ConnectionChanged(MIC1, True),
            ConnectionChanged(OUTSIDER, False),
            UploadVerified(MIC1, "speaker_1__mic_1.wav", 99),
            AnalysisFinished({}),
            AnalysisFailed("x"),
        ):
            state, _ = advance(state, message)


class TestCycle:
    def test_new_session_waits_for_the_admin_with_a_timer(self) -> None:
        state, effects = new_session(
            session_id="s", lobby_id="l", job_id="j", admin_device_id=ADMIN, speakers=[Slot(SPK1, "a")],
            microphones=[Slot(MIC1, "b")], signal=SIGNAL, timeouts=TIMEOUTS,
        )  # fmt: skip
        assert state.step is Step.IDLE
        assert effects == [StartTimer(STEP_TIMER, TIMEOUTS.idle_s, state.timers[STEP_TIMER])]
        assert status(state)["current_speaker"] == {"device_id": SPK1, "slot_id": "a"}

    def test_start_speaker_sends_start_measurement_to_speaker_and_microphones(self) -> None:
        state, effects = advance(fresh(), StartSpeaker(ADMIN))
        (push,) = pushes(effects)
        assert push.event == "measurement.start_measurement"
        assert push.device_ids == (SPK1, MIC1, MIC2)
        assert push.data["speaker_slot_id"] == "speaker_1"
        assert push.data["job_id"] == "j1"
        assert state.awaited == {SPK1, MIC1, MIC2}
        assert StartTimer(STEP_TIMER, TIMEOUTS.ready_s, state.timers[STEP_TIMER]) in effects

    def test_request_audio_goes_to_the_speaker_only_once_everyone_is_ready(self) -> None:
        state, _ = advance(fresh(), StartSpeaker(ADMIN))
        state, effects = feed(state, Ready(SPK1), Ready(MIC1))
        assert pushes(effects) == []
        state, effects = advance(state, Ready(MIC2))
        (push,) = pushes(effects)
        assert push == SendPush(
            (SPK1,),
            "measurement.request_audio",
            {"session_id": "s1", "speaker_slot_id": "speaker_1", "audio_url": SIGNAL.audio_url, "signal_id": "sig-1",
             "expected_hash": SHA},
        )  # fmt: skip
        assert state.step is Step.AWAITING_AUDIO
        assert StartTimer(STEP_TIMER, TIMEOUTS.audio_s, state.timers[STEP_TIMER]) in effects

    def test_duplicate_ready_is_idempotent(self) -> None:
        state, _ = feed(fresh(), StartSpeaker(ADMIN), Ready(MIC1))
        again, effects = advance(state, Ready(MIC1))
        assert again == state
        assert effects == []

    @pytest.mark.parametrize("audio_hash", [None, SHA, SHA.upper(), "sha256:" + SHA])
    def test_matching_or_absent_audio_hash_starts_recording(self, audio_hash: str | None) -> None:
        state, effects = advance(state_at(Step.AWAITING_AUDIO), SpeakerAudioReady(SPK1, audio_hash))
        (push,) = pushes(effects)
        assert push.event == "measurement.start_recording"
        assert push.device_ids == (MIC1, MIC2)
        assert state.step is Step.AWAITING_RECORDING

    def test_wrong_audio_hash_is_refused_and_the_wait_goes_on(self) -> None:
        state = state_at(Step.AWAITING_AUDIO)
        with pytest.raises(AppError) as caught:
            advance(state, SpeakerAudioReady(SPK1, "00" * 32))
        assert caught.value.code is ErrorCode.BAD_REQUEST
        assert "audio_hash" in caught.value.message

    def test_playback_wait_grows_with_the_signal(self) -> None:
        state = state_at(Step.AWAITING_RECORDING)
        state, effects = feed(state, RecordingStarted(MIC1), RecordingStarted(MIC2))
        (push,) = pushes(effects)
        assert push == SendPush((SPK1,), "measurement.start_playback",
                            {"session_id": "s1", "speaker_slot_id": "speaker_1", "signal_id": "sig-1"})  # fmt: skip
        timer = next(e for e in effects if isinstance(e, StartTimer))
        assert timer.seconds == TIMEOUTS.playback_margin_s + SIGNAL.duration_s
        longer = replace(state_at(Step.AWAITING_RECORDING), signal=replace(SIGNAL, duration_s=40.0))
        _, effects = feed(longer, RecordingStarted(MIC1), RecordingStarted(MIC2))
        timer = next(e for e in effects if isinstance(e, StartTimer))
        assert timer.seconds == TIMEOUTS.playback_margin_s + 40.0

    def test_stop_recording_gives_each_microphone_its_own_upload_name(self) -> None:
        state, effects = advance(state_at(Step.AWAITING_PLAYBACK), PlaybackComplete(SPK1))
        stops = pushes(effects, "measurement.stop_recording")
        assert [(p.device_ids, p.data["upload_name"]) for p in stops] == [
            ((MIC1,), "speaker_1__mic_1.wav"),
            ((MIC2,), "speaker_1__mic_2.wav"),
        ]
        assert all(p.data["job_id"] == "j1" for p in stops)
        assert stops[0].data["upload_url"] == "/v1/jobs/j1/uploads/speaker_1__mic_1.wav"
        assert state.step is Step.AWAITING_UPLOADS

    def test_upload_is_counted_only_after_verification(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        state, effects = advance(state, RecordingUploaded(MIC1, "speaker_1__mic_1.wav"))
        assert effects == [VerifyUpload(MIC1, "speaker_1__mic_1.wav", state.cycle, "speaker_1", "mic_1")]
        assert state.recordings == ()
        assert MIC1 in state.awaited
        state, _ = advance(state, UploadVerified(MIC1, "speaker_1__mic_1.wav", state.cycle))
        assert [r.upload_name for r in state.recordings] == ["speaker_1__mic_1.wav"]
        assert state.awaited == {MIC2}

    def test_upload_counted_once_despite_repeats(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        verified = UploadVerified(MIC1, "speaker_1__mic_1.wav", state.cycle)
        state, _ = feed(state, verified, verified, RecordingUploaded(MIC1, "speaker_1__mic_1.wav"), verified)
        assert len(state.recordings) == 1

    def test_verification_from_an_earlier_cycle_is_ignored(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        stale = UploadVerified(MIC1, "speaker_1__mic_1.wav", state.cycle - 1)
        assert advance(state, stale) == (state, [])

    def test_wrong_upload_name_is_a_bad_request(self) -> None:
        with pytest.raises(AppError) as caught:
            advance(state_at(Step.AWAITING_UPLOADS), RecordingUploaded(MIC1, "speaker_1__mic_2.wav"))
        assert caught.value.code is ErrorCode.BAD_REQUEST
        assert "speaker_1__mic_1.wav" in caught.value.message

    def test_someone_elses_counted_upload_is_forbidden(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        state, _ = advance(state, UploadVerified(MIC1, "speaker_1__mic_1.wav", state.cycle))
        with pytest.raises(AppError) as caught:
            advance(state, RecordingUploaded(MIC2, "speaker_1__mic_1.wav"))
        assert caught.value.code is ErrorCode.FORBIDDEN

    def test_last_upload_completes_the_speaker_and_starts_the_next(self) -> None:
        state, effects = upload_all(state_at(Step.AWAITING_UPLOADS), "speaker_1")
        (done,) = pushes(effects, "measurement.speaker_complete")
        assert set(done.device_ids) == {SPK1, SPK2, MIC1, MIC2, ADMIN}
        assert done.data["speaker_slot_id"] == "speaker_1"
        assert done.data["next_speaker_slot_id"] == "speaker_2"
        assert [r["upload_name"] for r in done.data["recordings"]] == ["speaker_1__mic_1.wav", "speaker_1__mic_2.wav"]
        (start,) = pushes(effects, "measurement.start_measurement")
        assert start.device_ids == (SPK2, MIC1, MIC2)
        assert state.step is Step.AWAITING_READY
        assert state.current_speaker == Slot(SPK2, "speaker_2")

    def test_last_speaker_completes_the_session_opens_the_lobby_and_analyses(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        state, _ = upload_all(state, "speaker_1")
        state = cycle_to_uploads(state, SPK2)
        state, effects = upload_all(state, "speaker_2")
        (complete,) = pushes(effects, "measurement.session_complete")
        assert complete.data["job_id"] == "j1"
        assert {(r["speaker_slot_id"], r["mic_slot_id"]) for r in complete.data["recordings"]} == {
            ("speaker_1", "mic_1"), ("speaker_1", "mic_2"), ("speaker_2", "mic_1"), ("speaker_2", "mic_2"),
        }  # fmt: skip
        assert complete.data["recordings"][0] == {
            "speaker_slot_id": "speaker_1", "mic_slot_id": "mic_1", "device_id": MIC1,
            "upload_name": "speaker_1__mic_1.wav",
        }  # fmt: skip
        assert ReleaseLobby("l1") in effects
        assert Analyze("j1") in effects
        assert state.step is Step.ANALYZING
        assert not state.holds_lobby

    def test_analysis_results_are_pushed_to_everyone(self) -> None:
        state, effects = advance(state_at(Step.ANALYZING), AnalysisFinished({"rt60_s": 0.5}))
        (push,) = pushes(effects)
        assert push.event == "measurement.analysis_complete"
        assert push.data == {"session_id": "s1", "job_id": "j1", "results": {"rt60_s": 0.5}}
        assert state.step is Step.COMPLETE
        assert state.timers == {}

    def test_failed_analysis_is_reported_with_its_reason(self) -> None:
        state, effects = advance(state_at(Step.ANALYZING), AnalysisFailed("no chirp found"))
        (push,) = pushes(effects)
        assert push.event == "measurement.error"
        assert push.data["code"] == "analysis_failed"
        assert "no chirp found" in push.data["message"]
        assert state.step is Step.COMPLETE
        assert state.analysis_error == "no chirp found"

    def test_analysis_that_never_answers_times_out(self) -> None:
        state = state_at(Step.ANALYZING)
        state, effects = advance(state, TimerFired(STEP_TIMER, state.timers[STEP_TIMER]))
        assert pushes(effects)[0].data["code"] == "analysis_failed"
        assert state.step is Step.COMPLETE
        assert advance(state, AnalysisFinished({})) == (state, [])


class TestFailures:
    def test_step_timeout_names_the_missing_devices_and_stops_the_cycle(self) -> None:
        state, _ = feed(fresh(), StartSpeaker(ADMIN), Ready(SPK1), Ready(MIC1))
        state, effects = advance(state, TimerFired(STEP_TIMER, state.timers[STEP_TIMER]))
        (push,) = pushes(effects)
        assert push.event == "measurement.error"
        assert set(push.device_ids) == {SPK1, SPK2, MIC1, MIC2, ADMIN}
        assert push.data["code"] == "step_timeout"
        assert push.data["step"] == "awaiting_ready"
        assert push.data["missing_device_ids"] == [MIC2]
        assert state.step is Step.FAILED
        assert StartTimer(STEP_TIMER, TIMEOUTS.idle_s, state.timers[STEP_TIMER]) in effects
        assert status(state)["last_error"]["device_ids"] == [MIC2]

    def test_stale_timer_is_ignored(self) -> None:
        state, _ = advance(fresh(), StartSpeaker(ADMIN))
        old = state.timers[STEP_TIMER]
        state, _ = feed(state, Ready(SPK1), Ready(MIC1), Ready(MIC2))
        assert advance(state, TimerFired(STEP_TIMER, old)) == (state, [])

    def test_retry_after_failure_keeps_earlier_speakers_and_redoes_the_current(self) -> None:
        state, _ = upload_all(state_at(Step.AWAITING_UPLOADS), "speaker_1")
        state = cycle_to_uploads(state, SPK2)
        state, _ = feed(state, UploadVerified(MIC1, "speaker_2__mic_1.wav", state.cycle))
        state, _ = advance(state, TimerFired(STEP_TIMER, state.timers[STEP_TIMER]))
        assert state.step is Step.FAILED
        state, effects = advance(state, StartSpeaker(ADMIN))
        assert state.step is Step.AWAITING_READY
        assert state.current_speaker == Slot(SPK2, "speaker_2")
        assert {r.speaker_slot_id for r in state.recordings} == {"speaker_1"}
        assert len(state.recordings) == 2
        assert pushes(effects)[0].device_ids == (SPK2, MIC1, MIC2)
        assert state.failure is None

    def test_device_error_stops_the_cycle_and_tells_everyone(self) -> None:
        state, effects = advance(state_at(Step.AWAITING_RECORDING), ErrorReported(MIC2, "permission denied", "mic"))
        (push,) = pushes(effects)
        assert push.event == "measurement.error"
        assert set(push.device_ids) == {SPK1, SPK2, MIC1, MIC2, ADMIN}
        assert push.data["device_id"] == MIC2
        assert push.data["error_message"] == "permission denied"
        assert push.data["step"] == "awaiting_recording"
        assert state.step is Step.FAILED

    def test_cancel_tells_everyone_frees_the_lobby_and_stops_all_timers(self) -> None:
        state = state_at(Step.AWAITING_RECORDING)
        state, _ = advance(state, ConnectionChanged(MIC1, False))
        assert len(state.timers) == 2
        state, effects = advance(state, CancelSession(ADMIN, "too noisy"))
        (push,) = pushes(effects)
        assert push.event == "measurement.session_cancelled"
        assert push.data == {"session_id": "s1", "reason": "too noisy", "cancelled_by": ADMIN}
        assert ReleaseLobby("l1") in effects
        assert {e.key for e in effects if isinstance(e, CancelTimer)} == {STEP_TIMER, "grace:" + MIC1}
        assert state.timers == {}
        assert state.step is Step.CANCELLED

    @pytest.mark.parametrize("step", [Step.IDLE, Step.FAILED])
    def test_admin_who_never_comes_back_expires_the_session(self, step: Step) -> None:
        state = state_at(step)
        state, effects = advance(state, TimerFired(STEP_TIMER, state.timers[STEP_TIMER]))
        assert state.step is Step.CANCELLED
        assert pushes(effects)[0].event == "measurement.session_cancelled"
        assert "idle_timeout" in pushes(effects)[0].data["reason"]
        assert ReleaseLobby("l1") in effects


class TestDisconnects:
    def test_awaited_device_that_drops_gets_a_grace_timer(self) -> None:
        state, effects = advance(state_at(Step.AWAITING_RECORDING), ConnectionChanged(MIC2, False))
        assert effects == [StartTimer("grace:" + MIC2, TIMEOUTS.disconnect_grace_s, state.timers["grace:" + MIC2])]

    def test_device_not_awaited_gets_no_grace_timer(self) -> None:
        state, effects = advance(state_at(Step.AWAITING_AUDIO), ConnectionChanged(MIC2, False))
        assert effects == []
        assert MIC2 in state.disconnected

    def test_reconnect_resends_the_awaited_command(self) -> None:
        state, _ = advance(state_at(Step.AWAITING_RECORDING), ConnectionChanged(MIC2, False))
        state, effects = advance(state, ConnectionChanged(MIC2, True))
        assert CancelTimer("grace:" + MIC2) in effects
        (push,) = pushes(effects)
        assert push.event == "measurement.start_recording"
        assert push.device_ids == (MIC2,)
        assert "grace:" + MIC2 not in state.timers

    def test_reconnect_during_uploads_resends_that_microphones_stop_recording(self) -> None:
        state, _ = advance(state_at(Step.AWAITING_UPLOADS), ConnectionChanged(MIC2, False))
        _, effects = advance(state, ConnectionChanged(MIC2, True))
        (push,) = pushes(effects)
        assert push.event == "measurement.stop_recording"
        assert push.data["upload_name"] == "speaker_1__mic_2.wav"

    def test_grace_expiry_fails_the_step_naming_the_device(self) -> None:
        state, _ = advance(state_at(Step.AWAITING_RECORDING), RecordingStarted(MIC1))
        state, _ = advance(state, ConnectionChanged(MIC2, False))
        state, effects = advance(state, TimerFired("grace:" + MIC2, state.timers["grace:" + MIC2]))
        (push,) = pushes(effects)
        assert push.data["code"] == "step_timeout"
        assert push.data["missing_device_ids"] == [MIC2]
        assert "disconnected" in push.data["reason"]
        assert state.step is Step.FAILED

    def test_disconnected_device_gets_its_grace_timer_when_the_step_needs_it(self) -> None:
        state, _ = advance(state_at(Step.AWAITING_AUDIO), ConnectionChanged(MIC2, False))
        state, effects = advance(state, SpeakerAudioReady(SPK1))
        assert StartTimer("grace:" + MIC2, TIMEOUTS.disconnect_grace_s, state.timers["grace:" + MIC2]) in effects

    def test_grace_timer_is_dropped_when_the_step_moves_on(self) -> None:
        state, _ = advance(state_at(Step.AWAITING_READY), ConnectionChanged(MIC2, False))
        state, _ = feed(state, Ready(SPK1), Ready(MIC1), Ready(MIC2))  # MIC2 answered through a new socket
        assert state.step is Step.AWAITING_AUDIO
        assert "grace:" + MIC2 not in state.timers


class TestLineUp:
    @pytest.mark.parametrize(
        ("speakers", "microphones", "fragment"),
        [
            ([], [Slot(MIC1, "m")], "speaker"),
            ([Slot(SPK1, "s")], [], "microphone"),
            ([Slot(SPK1, "s")], [Slot(SPK1, "m")], "both"),
            ([Slot(SPK1, "s"), Slot(SPK2, "s")], [Slot(MIC1, "m")], "slot s"),
            ([Slot(SPK1, "s"), Slot(SPK1, "t")], [Slot(MIC1, "m")], "twice"),
            ([Slot(SPK1, "a__b"), Slot(SPK2, "a")], [Slot(MIC1, "c"), Slot(MIC2, "b__c")], "upload name"),
        ],
    )
    def test_bad_line_up_is_refused(self, speakers: list[Slot], microphones: list[Slot], fragment: str) -> None:
        with pytest.raises(AppError) as caught:
            new_session(
                session_id="s", lobby_id="l", job_id="j", admin_device_id=ADMIN,
                speakers=speakers, microphones=microphones, signal=SIGNAL,
            )  # fmt: skip
        assert caught.value.code is ErrorCode.BAD_REQUEST
        assert fragment in caught.value.message


def test_status_shows_who_is_awaited_and_what_is_recorded() -> None:
    state = state_at(Step.AWAITING_UPLOADS)
    state, _ = advance(state, UploadVerified(MIC1, "speaker_1__mic_1.wav", state.cycle))
    view: dict[str, Any] = status(state)
    assert view["state"] == "awaiting_uploads"
    assert view["awaiting_device_ids"] == [MIC2]
    assert view["current_speaker"] == {"device_id": SPK1, "slot_id": "speaker_1"}
    assert [r["upload_name"] for r in view["recordings"]] == ["speaker_1__mic_1.wav"]


class TestAppDialect:
    """The fields and names the Sonalyze app reads or sends (spec phone-app.md, sections 2 and 3)."""

    def test_start_measurement_names_the_current_speaker_slot(self) -> None:
        _, effects = advance(fresh(), StartSpeaker(ADMIN))
        (start,) = pushes(effects, "measurement.start_measurement")
        assert start.data["current_speaker_slot_id"] == "speaker_1"

    def test_request_audio_without_a_known_hash_has_no_expected_hash(self) -> None:
        state = replace(fresh(), signal=replace(SIGNAL, audio_sha256=None))
        state, _ = feed(state, StartSpeaker(ADMIN), Ready(SPK1), Ready(MIC1))
        _, effects = advance(state, Ready(MIC2))
        assert "expected_hash" not in pushes(effects, "measurement.request_audio")[0].data

    @pytest.mark.parametrize(("base", "endpoint"), [("", "/v1/jobs/j1/uploads/"),
                                                    ("https://sonalyze.example", "https://sonalyze.example/v1/jobs/j1/uploads/")])  # fmt: skip
    def test_stop_recording_carries_the_uploads_base(self, base: str, endpoint: str) -> None:
        state = replace(state_at(Step.AWAITING_PLAYBACK), upload_base_url=base)
        _, effects = advance(state, PlaybackComplete(SPK1))
        assert {p.data["upload_endpoint"] for p in pushes(effects, "measurement.stop_recording")} == {endpoint}

    def test_app_upload_name_is_attributed_to_the_current_speaker_and_that_microphone(self) -> None:
        state = state_at(Step.AWAITING_UPLOADS)
        name = app_upload_name_for(MIC2, "speaker_1")
        state, effects = advance(state, RecordingUploaded(MIC2, name))
        assert effects == [VerifyUpload(MIC2, name, state.cycle, "speaker_1", "mic_2")]
        state, _ = advance(state, UploadVerified(MIC2, name, state.cycle))
        assert [r.as_dict() for r in state.recordings] == [
            {"speaker_slot_id": "speaker_1", "mic_slot_id": "mic_2", "device_id": MIC2, "upload_name": name}
        ]

    @pytest.mark.parametrize("name", ["../x.wav", "a b.wav", "...", "x" * 101 + ".wav", "speaker_2__mic_1.wav",
                                      "recording_mic-b_speaker_1.wav"])  # fmt: skip
    def test_invalid_or_another_pairs_upload_name_is_a_bad_request(self, name: str) -> None:
        with pytest.raises(AppError) as caught:
            advance(state_at(Step.AWAITING_UPLOADS), RecordingUploaded(MIC1, name))
        assert caught.value.code is ErrorCode.BAD_REQUEST

    def test_speaker_complete_and_session_complete_name_the_slots(self) -> None:
        state, effects = upload_all(state_at(Step.AWAITING_UPLOADS), "speaker_1")
        (done,) = pushes(effects, "measurement.speaker_complete")
        assert done.data["completed_speaker_slot_id"] == "speaker_1"
        assert done.data["remaining_speakers"] == 1
        assert done.data["remaining_speaker_slot_ids"] == ["speaker_2"]
        state = cycle_to_uploads(state, SPK2)
        state, effects = upload_all(state, "speaker_2")
        (done,) = pushes(effects, "measurement.speaker_complete")
        assert done.data["remaining_speakers"] == 0
        (complete,) = pushes(effects, "measurement.session_complete")
        assert complete.data["completed_speakers"] == ["speaker_1", "speaker_2"]

    def test_errors_carry_the_apps_error_fields(self) -> None:
        state = state_at(Step.AWAITING_RECORDING)
        _, effects = advance(state, TimerFired(STEP_TIMER, state.timers[STEP_TIMER]))
        (timeout,) = pushes(effects, "measurement.error")
        assert (timeout.data["error_device_id"], timeout.data["error_code"]) == (MIC1, "step_timeout")
        assert isinstance(timeout.data["error_message"], str)
        _, effects = advance(state, ErrorReported(MIC2, "mic broke"))
        (device,) = pushes(effects, "measurement.error")
        assert (device.data["error_device_id"], device.data["error_code"], device.data["error_message"]) == (
            MIC2, "device_error", "mic broke")  # fmt: skip
        _, effects = advance(state_at(Step.ANALYZING), AnalysisFailed("no chirp"))
        (failed,) = pushes(effects, "measurement.error")
        assert failed.data["error_code"] == "analysis_failed" and "no chirp" in failed.data["error_message"]

    def test_automatic_analysis_pushes_each_recordings_app_results(self) -> None:
        state = state_at(Step.ANALYZING)
        entries = [
            {"upload_name": "speaker_1__mic_1.wav", "app_results": {"rt": {"rt60_s": 0.5}}},
            {"upload_name": "speaker_2__mic_2.wav", "app_results": {"rt": {"rt60_s": 0.7}}},
            {"upload_name": "speaker_1__mic_2.wav"},  # no app shape (older measurement service): nothing pushed
        ]
        _, effects = advance(state, AnalysisFinished({"job_id": "j1", "results": entries}))
        sent = pushes(effects, "measurement.analysis_results")
        assert [(p.data["recording_upload"], p.data["speaker_slot_id"], p.data["mic_slot_id"], p.data["results"])
                for p in sent] == [("speaker_1__mic_1.wav", "speaker_1", "mic_1", {"rt": {"rt60_s": 0.5}}),
                                   ("speaker_2__mic_2.wav", "speaker_2", "mic_2", {"rt": {"rt60_s": 0.7}})]  # fmt: skip
        assert all(set(p.device_ids) == {SPK1, SPK2, MIC1, MIC2, ADMIN} for p in sent)


class TestPhaseUpdates:
    def phases(self, effects: list[Effect]) -> list[dict[str, Any]]:
        return [p.data for p in pushes(effects, PHASE_UPDATE)]

    def test_every_phase_of_a_session_is_pushed_to_everyone_in_order(self) -> None:
        state, effects = feed(fresh(), StartSpeaker(ADMIN))
        state = cycle_to_uploads(state, SPK1)
        all_effects = effects
        state, effects = upload_all(state, "speaker_1")
        all_effects += effects
        seen = [d["phase"] for d in self.phases(all_effects)]
        assert seen[0] == "waiting_for_ready"
        assert "uploading" in seen
        assert all(set(p.device_ids) == {SPK1, SPK2, MIC1, MIC2, ADMIN} for p in pushes(all_effects, PHASE_UPDATE))
        state = cycle_to_uploads(state, SPK2)
        state, effects = upload_all(state, "speaker_2")
        assert self.phases(effects)[-1]["phase"] == "processing"
        _, effects = advance(state, AnalysisFinished({}))
        assert [d["phase"] for d in self.phases(effects)] == ["completed"]

    def test_counters_move_within_a_phase(self) -> None:
        state = state_at(Step.AWAITING_AUDIO)
        state, effects = advance(state, SpeakerAudioReady(SPK1))
        (entered,) = self.phases(effects)
        assert (entered["phase"], entered["recordings_started"], entered["total_microphones"]) == ("recording", 0, 2)
        state, effects = advance(state, RecordingStarted(MIC1))
        (one,) = self.phases(effects)
        assert (one["phase"], one["recordings_started"]) == ("recording", 1)
        assert {"session_id", "phase_description", "current_speaker_slot_id", "uploads_received"} <= one.keys()

    def test_a_refused_or_repeated_message_pushes_no_phase(self) -> None:
        state = state_at(Step.AWAITING_AUDIO)
        assert advance(state, Ready(MIC1)) == (state, [])


class TestPayloadModels:
    """Every push the coordinator sends fits its model in `sonalyze_protocol.measurement_events`."""

    def sessions(self) -> list[list[Effect]]:
        runs: list[list[Effect]] = []
        state, effects = feed(
            fresh(), StartSpeaker(ADMIN), ConnectionChanged(MIC2, False), ConnectionChanged(MIC2, True)
        )
        for speaker, slot in ((SPK1, "speaker_1"), (SPK2, "speaker_2")):
            state, more = feed(
                state, Ready(speaker), Ready(MIC1), Ready(MIC2), SpeakerAudioReady(speaker),
                RecordingStarted(MIC1), RecordingStarted(MIC2), PlaybackComplete(speaker),
            )  # fmt: skip
            effects += more
            state, more = upload_all(state, slot)
            effects += more
        entries = [{"upload_name": "speaker_1__mic_1.wav", "app_results": {"rt": {"rt60_s": 0.5}}}]
        runs.append(effects + advance(state, AnalysisFinished({"results": entries}, {"n": 1}))[1])
        runs.append(advance(state, AnalysisFailed("no chirp"))[1])
        timed_out = state_at(Step.AWAITING_AUDIO)
        runs.append(advance(timed_out, TimerFired(STEP_TIMER, timed_out.timers[STEP_TIMER]))[1])
        runs.append(advance(state_at(Step.AWAITING_RECORDING), ErrorReported(MIC1, "broke"))[1])
        runs.append(advance(state_at(Step.IDLE), ErrorReported(MIC1, "broke", "mic"))[1])
        runs.append(advance(state_at(Step.AWAITING_READY), CancelSession(ADMIN, "noisy"))[1])
        return runs

    def test_every_push_fits_its_model(self) -> None:
        sent = [e for run in self.sessions() for e in run if isinstance(e, SendPush)]
        assert {p.event for p in sent} == set(PUSH_PAYLOADS)  # every kind of push was seen
        for push in sent:
            assert fits_payload(push.event, dict(push.data)), (push.event, sorted(push.data))
