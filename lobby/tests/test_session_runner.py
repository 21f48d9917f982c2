"""The async shell: effects carried out in order, timers on a fake clock, calls to a fake measurement service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sonalyze_lobby.measurement_protocol.messages import (
    CancelSession,
    PlaybackComplete,
    Ready,
    RecordingStarted,
    RecordingUploaded,
    SpeakerAudioReady,
    StartSpeaker,
)
from sonalyze_lobby.measurement_protocol.state import (
    SignalInfo,
    Slot,
    Step,
)
from sonalyze_lobby.session_runner import Coordinator, NewSession
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.errors import AppError, ErrorCode, ServiceUnavailable

ADMIN, SPK, MIC1, MIC2 = "admin", "spk", "mic-1", "mic-2"
SIGNAL = SignalInfo("sig-1", "/v1/measurement/audio?sample_rate=48000", duration_s=4.0)
SETTINGS = Settings(
    measurement_ready_timeout_s=5,
    measurement_audio_timeout_s=6,
    measurement_recording_timeout_s=7,
    measurement_playback_margin_s=8,
    measurement_upload_timeout_s=9,
    measurement_idle_timeout_s=100,
    measurement_session_analysis_timeout_s=50,
    measurement_disconnect_grace_s=3,
    measurement_session_retention_s=1000,
)


class _Handle:
    def __init__(self, clock: FakeClock, due_s: float, callback: Callable[[], None]) -> None:
        self.clock, self.due_s, self.callback, self.cancelled = clock, due_s, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A `Scheduler` whose time only moves when a test says so."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.handles: list[_Handle] = []

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(self, self.now_s + delay_s, callback)
        self.handles.append(handle)
        return handle

    def pending_delays_s(self) -> list[float]:
        return sorted(h.due_s - self.now_s for h in self.handles if not h.cancelled and h.due_s > self.now_s)

    async def advance(self, seconds: float, coordinator: Coordinator) -> None:
        self.now_s += seconds
        for handle in sorted(self.handles, key=lambda h: h.due_s):
            if not handle.cancelled and handle.due_s <= self.now_s:
                handle.cancelled = True
                handle.callback()
        await settle(coordinator)


async def settle(coordinator: Coordinator) -> None:
    """Wait until the coordinator's background tasks (timer firings, analysis) are done."""
    for _ in range(100):
        tasks = [t for t in coordinator._tasks if not t.done()]
        if not tasks:
            await asyncio.sleep(0)
            if not [t for t in coordinator._tasks if not t.done()]:
                return
        await asyncio.wait(tasks, timeout=2.0)
    raise AssertionError("coordinator tasks did not settle")


@dataclass
class FakePusher:
    pushes: list[tuple[tuple[str, ...], str, dict[str, Any]]] = field(default_factory=list)

    async def push(self, device_ids: Any, event: str, data: dict[str, Any]) -> None:
        self.pushes.append((tuple(device_ids), event, data))

    def events(self) -> list[str]:
        """Every push but the phase updates (checked on their own)."""
        return [event for _, event, _ in self.pushes if event != "measurement.phase_update"]

    def phases(self) -> list[str]:
        return [data["phase"] for _, event, data in self.pushes if event == "measurement.phase_update"]

    def last(self, event: str) -> tuple[tuple[str, ...], dict[str, Any]]:
        ids, _, data = next(p for p in reversed(self.pushes) if p[1] == event)
        return ids, data

    def to(self, device_id: str) -> list[str]:
        return [event for ids, event, _ in self.pushes if device_id in ids and event != "measurement.phase_update"]


@dataclass
class FakeMeasurement:
    stored: set[str] = field(default_factory=set)
    checks: list[str] = field(default_factory=list)
    analysis: Any = field(default_factory=lambda: {"job_id": "j1", "results": [{"upload_name": "x"}], "summary": {}})
    analysis_gate: asyncio.Event | None = None
    down: bool = False

    signal_failures: int = 0
    signal_calls: int = 0

    async def get_signal(self, sample_rate_hz: int) -> SignalInfo:
        self.signal_calls += 1
        if self.signal_calls <= self.signal_failures:
            raise ServiceUnavailable("the measurement service is unreachable")
        return SIGNAL

    announced: dict[str, dict[str, str]] = field(default_factory=dict)

    async def announce_recording(self, job_id: str, upload_name: str, **slots: str) -> None:
        self.announced[upload_name] = slots

    async def upload_exists(self, job_id: str, upload_name: str) -> bool:
        if self.down:
            raise ServiceUnavailable("the measurement service is unreachable")
        self.checks.append(upload_name)
        return upload_name in self.stored

    async def analyze(self, job_id: str, timeout_s: float) -> Any:
        if self.analysis_gate is not None:
            await self.analysis_gate.wait()
        if isinstance(self.analysis, Exception):
            raise self.analysis
        return self.analysis


@dataclass
class FakeLobbyStates:
    released: list[tuple[str, str]] = field(default_factory=list)

    async def release(self, lobby_id: str, actor_device_id: str) -> None:
        self.released.append((lobby_id, actor_device_id))


@dataclass
class Rig:
    coordinator: Coordinator
    clock: FakeClock
    pusher: FakePusher
    measurement: FakeMeasurement
    lobbies: FakeLobbyStates

    async def open(self, lobby_id: str = "l1", disconnected: frozenset[str] = frozenset()) -> str:
        state = await self.coordinator.open_session(
            NewSession(
                lobby_id=lobby_id,
                job_id="j1",
                admin_device_id=ADMIN,
                speakers=(Slot(SPK, "speaker_1"),),
                microphones=(Slot(MIC1, "mic_1"), Slot(MIC2, "mic_2")),
                signal=SIGNAL,
                disconnected=disconnected,
            )
        )
        return state.session_id

    async def to_uploads(self, session_id: str) -> None:
        send = self.coordinator.send
        await send(session_id, StartSpeaker(ADMIN))
        for message in (Ready(SPK), Ready(MIC1), Ready(MIC2), SpeakerAudioReady(SPK), RecordingStarted(MIC1),
                        RecordingStarted(MIC2), PlaybackComplete(SPK)):  # fmt: skip
            await send(session_id, message)

    async def upload(self, session_id: str, device_id: str, name: str) -> None:
        self.measurement.stored.add(name)
        await self.coordinator.send(session_id, RecordingUploaded(device_id, name))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock, pusher, measurement, lobbies = FakeClock(), FakePusher(), FakeMeasurement(), FakeLobbyStates()
    ids = iter(f"session-{i}" for i in range(1000))
    coordinator = Coordinator(
        settings=SETTINGS, pusher=lambda: pusher, measurement=measurement, lobby_states=lobbies,
        scheduler=clock, new_id=lambda: next(ids),
    )  # fmt: skip
    yield Rig(coordinator, clock, pusher, measurement, lobbies)
    await coordinator.aclose()


class TestWarmUp:
    async def test_signal_is_fetched_at_start_until_the_measurement_service_answers(self, rig: Rig) -> None:
        rig.measurement.signal_failures = 2  # it starts after the lobby
        rig.coordinator.warm_up()
        await settle(rig.coordinator)
        assert rig.measurement.signal_calls == 3


class TestWholeSession:
    async def test_session_runs_to_analysis_complete(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        assert rig.pusher.events() == [
            "measurement.start_measurement",
            "measurement.request_audio",
            "measurement.start_recording",
            "measurement.start_playback",
            "measurement.stop_recording",
            "measurement.stop_recording",
        ]
        await rig.upload(sid, MIC1, "speaker_1__mic_1.wav")
        await rig.upload(sid, MIC2, "speaker_1__mic_2.wav")
        await settle(rig.coordinator)
        assert rig.measurement.checks == ["speaker_1__mic_1.wav", "speaker_1__mic_2.wav"]
        assert rig.pusher.events()[6:] == [
            "measurement.speaker_complete",
            "measurement.session_complete",
            "measurement.analysis_complete",
        ]
        ids, data = rig.pusher.last("measurement.analysis_complete")
        assert set(ids) == {ADMIN, SPK, MIC1, MIC2}
        assert data == {"session_id": sid, "job_id": "j1", "results": [{"upload_name": "x"}], "summary": {}}
        assert rig.lobbies.released == [("l1", ADMIN)]
        assert rig.coordinator.get(sid).step is Step.COMPLETE
        assert rig.clock.pending_delays_s() == [SETTINGS.measurement_session_retention_s]

    async def test_every_upload_is_announced_with_its_slots_then_counted(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        await rig.upload(sid, MIC1, "recording_mic-1_speaker_1.wav")
        assert rig.measurement.announced["recording_mic-1_speaker_1.wav"] == {
            "speaker_slot_id": "speaker_1", "mic_slot_id": "mic_1", "device_id": MIC1, "signal_id": SIGNAL.signal_id,
        }  # fmt: skip
        assert rig.measurement.checks == ["recording_mic-1_speaker_1.wav"]
        await rig.upload(sid, MIC2, "speaker_1__mic_2.wav")
        await settle(rig.coordinator)
        assert rig.measurement.announced["speaker_1__mic_2.wav"]["mic_slot_id"] == "mic_2"
        _, complete = rig.pusher.last("measurement.session_complete")
        assert [r["upload_name"] for r in complete["recordings"]] == [
            "recording_mic-1_speaker_1.wav",
            "speaker_1__mic_2.wav",
        ]
        assert rig.pusher.phases()[-2:] == ["processing", "completed"]

    async def test_upload_the_service_does_not_have_is_refused_and_not_counted(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        with pytest.raises(AppError) as caught:
            await rig.coordinator.send(sid, RecordingUploaded(MIC1, "speaker_1__mic_1.wav"))
        assert caught.value.code is ErrorCode.NOT_FOUND
        assert "speaker_1__mic_1.wav" in caught.value.message
        assert rig.coordinator.get(sid).recordings == ()
        await rig.upload(sid, MIC1, "speaker_1__mic_1.wav")
        assert len(rig.coordinator.get(sid).recordings) == 1

    async def test_unreachable_measurement_service_is_reported_to_the_uploader(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        rig.measurement.down = True
        with pytest.raises(AppError) as caught:
            await rig.coordinator.send(sid, RecordingUploaded(MIC1, "speaker_1__mic_1.wav"))
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
        assert rig.coordinator.get(sid).step is Step.AWAITING_UPLOADS

    async def test_repeated_upload_is_checked_but_counted_once(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        await asyncio.gather(*(rig.upload(sid, MIC1, "speaker_1__mic_1.wav") for _ in range(3)))
        assert [r.upload_name for r in rig.coordinator.get(sid).recordings] == ["speaker_1__mic_1.wav"]

    async def test_failed_analysis_is_pushed_with_its_reason(self, rig: Rig) -> None:
        rig.measurement.analysis = AppError("no sync chirp in speaker_1__mic_2.wav", code="bad_request")
        sid = await rig.open()
        await rig.to_uploads(sid)
        await rig.upload(sid, MIC1, "speaker_1__mic_1.wav")
        await rig.upload(sid, MIC2, "speaker_1__mic_2.wav")
        await settle(rig.coordinator)
        _, data = rig.pusher.last("measurement.error")
        assert data["code"] == "analysis_failed"
        assert "no sync chirp" in data["message"]
        assert rig.coordinator.get(sid).step is Step.COMPLETE

    async def test_analysis_that_hangs_times_out_on_the_clock(self, rig: Rig) -> None:
        rig.measurement.analysis_gate = asyncio.Event()
        sid = await rig.open()
        await rig.to_uploads(sid)
        await rig.upload(sid, MIC1, "speaker_1__mic_1.wav")
        await rig.upload(sid, MIC2, "speaker_1__mic_2.wav")
        assert rig.coordinator.get(sid).step is Step.ANALYZING
        rig.clock.now_s += SETTINGS.measurement_session_analysis_timeout_s
        for handle in rig.clock.handles:
            if not handle.cancelled and handle.due_s <= rig.clock.now_s:
                handle.cancelled = True
                handle.callback()
        for _ in range(10):
            await asyncio.sleep(0)
        assert rig.coordinator.get(sid).step is Step.COMPLETE
        assert rig.pusher.last("measurement.error")[1]["code"] == "analysis_failed"
        rig.measurement.analysis_gate.set()  # the late answer changes nothing
        await settle(rig.coordinator)
        assert "measurement.analysis_complete" not in rig.pusher.events()


class TestTimers:
    async def test_step_timeout_fires_on_the_clock_and_names_the_silent_device(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        await rig.coordinator.send(sid, Ready(SPK))
        await rig.coordinator.send(sid, Ready(MIC1))
        await rig.clock.advance(SETTINGS.measurement_ready_timeout_s - 0.1, rig.coordinator)
        assert "measurement.error" not in rig.pusher.events()
        await rig.clock.advance(0.2, rig.coordinator)
        ids, data = rig.pusher.last("measurement.error")
        assert set(ids) == {ADMIN, SPK, MIC1, MIC2}
        assert data["code"] == "step_timeout"
        assert data["step"] == "awaiting_ready"
        assert data["missing_device_ids"] == [MIC2]
        assert rig.coordinator.get(sid).step is Step.FAILED
        assert rig.clock.pending_delays_s() == [pytest.approx(SETTINGS.measurement_idle_timeout_s)]

    async def test_timer_of_a_finished_step_never_fires(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        for device in (SPK, MIC1, MIC2):
            await rig.coordinator.send(sid, Ready(device))
        await rig.clock.advance(SETTINGS.measurement_ready_timeout_s + 0.5, rig.coordinator)
        assert "measurement.error" not in rig.pusher.events()
        assert rig.coordinator.get(sid).step is Step.AWAITING_AUDIO

    async def test_playback_wait_is_the_margin_plus_the_signal(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.to_uploads(sid)
        playback_handles = [h for h in rig.clock.handles if h.due_s == SETTINGS.measurement_playback_margin_s + 4.0]
        assert len(playback_handles) == 1
        assert playback_handles[0].cancelled  # the speaker answered in time

    async def test_admin_who_never_starts_expires_the_session_and_frees_the_lobby(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.clock.advance(SETTINGS.measurement_idle_timeout_s, rig.coordinator)
        assert rig.coordinator.get(sid).step is Step.CANCELLED
        assert rig.lobbies.released == [("l1", ADMIN)]
        assert rig.coordinator.holding("l1") is None

    async def test_finished_session_is_forgotten_after_the_retention(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, CancelSession(ADMIN))
        await rig.clock.advance(SETTINGS.measurement_session_retention_s, rig.coordinator)
        with pytest.raises(AppError) as caught:
            rig.coordinator.get(sid)
        assert caught.value.code is ErrorCode.NOT_FOUND

    async def test_aclose_stops_every_timer(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        await rig.coordinator.aclose()
        assert rig.clock.pending_delays_s() == []


class TestConnections:
    async def test_reconnect_within_grace_resends_the_command(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        await rig.coordinator.device_connection_changed(MIC2, False)
        await rig.clock.advance(SETTINGS.measurement_disconnect_grace_s - 1, rig.coordinator)
        await rig.coordinator.device_connection_changed(MIC2, True)
        assert rig.pusher.to(MIC2) == ["measurement.start_measurement", "measurement.start_measurement"]
        await rig.clock.advance(1.5, rig.coordinator)
        assert "measurement.error" not in rig.pusher.events()

    async def test_device_that_stays_away_fails_the_step_after_the_grace(self, rig: Rig) -> None:
        sid = await rig.open()
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        await rig.coordinator.send(sid, Ready(MIC1))
        await rig.coordinator.device_connection_changed(MIC1, False)  # not awaited any more: no grace
        await rig.coordinator.device_connection_changed(MIC2, False)
        await rig.clock.advance(SETTINGS.measurement_disconnect_grace_s, rig.coordinator)
        _, data = rig.pusher.last("measurement.error")
        assert data["code"] == "step_timeout"
        assert data["missing_device_ids"] == [SPK, MIC2]
        assert MIC2 in data["reason"]

    async def test_device_offline_at_creation_gets_a_grace_timer_when_awaited(self, rig: Rig) -> None:
        sid = await rig.open(disconnected=frozenset({MIC1}))
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        assert SETTINGS.measurement_disconnect_grace_s in rig.clock.pending_delays_s()

    async def test_connection_events_of_strangers_change_nothing(self, rig: Rig) -> None:
        sid = await rig.open()
        before = rig.coordinator.get(sid)
        await rig.coordinator.device_connection_changed("someone-else", False)
        assert rig.coordinator.get(sid) is before


class TestSessions:
    async def test_one_session_per_lobby(self, rig: Rig) -> None:
        await rig.open("l1")
        with pytest.raises(AppError) as caught:
            await rig.open("l1")
        assert caught.value.code is ErrorCode.CONFLICT
        await rig.open("l2")

    async def test_lobby_is_free_again_once_the_session_completes(self, rig: Rig) -> None:
        sid = await rig.open("l1")
        await rig.to_uploads(sid)
        await rig.upload(sid, MIC1, "speaker_1__mic_1.wav")
        await rig.upload(sid, MIC2, "speaker_1__mic_2.wav")
        assert rig.coordinator.holding("l1") is None
        await rig.open("l1")

    async def test_status_for_outsiders_is_forbidden(self, rig: Rig) -> None:
        sid = await rig.open()
        assert rig.coordinator.status_for(sid, MIC1)["state"] == "idle"
        with pytest.raises(AppError) as caught:
            rig.coordinator.status_for(sid, "stranger")
        assert caught.value.code is ErrorCode.FORBIDDEN

    async def test_unknown_session_is_not_found(self, rig: Rig) -> None:
        with pytest.raises(AppError) as caught:
            await rig.coordinator.send("nope", Ready(MIC1))
        assert caught.value.code is ErrorCode.NOT_FOUND

    async def test_closing_the_lobby_cancels_its_session(self, rig: Rig) -> None:
        sid = await rig.open("l1")
        await rig.coordinator.send(sid, StartSpeaker(ADMIN))
        await rig.coordinator.lobby_closed("l1")
        assert rig.coordinator.get(sid).step is Step.CANCELLED
        assert rig.pusher.last("measurement.session_cancelled")[1]["reason"] == "lobby_closed"
        await rig.coordinator.lobby_closed("l1")  # nothing left to cancel


class TestProtocolSettings:
    def test_the_lobby_reads_its_own_analysis_timeout_not_the_measurement_services(self, monkeypatch) -> None:
        monkeypatch.setenv("MEASUREMENT_ANALYSIS_TIMEOUT_S", "7")  # the measurement service's, per recording
        monkeypatch.setenv("MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S", "42")
        monkeypatch.setenv("MEASUREMENT_READY_TIMEOUT_S", "3")
        timeouts = Settings().protocol_timeouts
        assert (timeouts.analysis_s, timeouts.ready_s) == (42.0, 3.0)

    def test_the_old_shared_name_alone_leaves_the_lobbys_default(self, monkeypatch) -> None:
        monkeypatch.setenv("MEASUREMENT_ANALYSIS_TIMEOUT_S", "7")
        monkeypatch.delenv("MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S", raising=False)
        assert Settings().protocol_timeouts.analysis_s == 180.0
