"""Stored sessions: every transition written before its effects, resumed with its timers and commands,
leases fenced, and a state that cannot be decoded ends the session with ``service_restarted``."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sonalyze_db import Database
from sonalyze_lobby import restart
from sonalyze_lobby.broadcast import Broadcaster
from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.measurement_protocol import (
    Ready,
    SessionState,
    Slot,
    SpeakerAudioReady,
    StartSpeaker,
    Step,
)
from sonalyze_lobby.models import DevicePresence, Lobby, LobbyState, MeasurementSession, Participant
from sonalyze_lobby.replicas import CONNECTION_PATH, Relay
from sonalyze_lobby.session_runner import Coordinator, LeaseLost, NewSession
from sonalyze_lobby.session_store import STATE_VERSION, DatabaseStore, Replica, UndecodableState, decode, encode
from sonalyze_protocol.broadcast import BroadcastClient


def _runner_fakes() -> Any:
    """The fakes of ``test_session_runner`` (the tests import in importlib mode: no sibling imports)."""
    path = Path(__file__).with_name("test_session_runner.py")
    spec = importlib.util.spec_from_file_location("_lobby_runner_fakes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_fakes = _runner_fakes()
ADMIN, SPK, MIC1, MIC2 = _fakes.ADMIN, _fakes.SPK, _fakes.MIC1, _fakes.MIC2
SETTINGS, SIGNAL, settle = _fakes.SETTINGS, _fakes.SIGNAL, _fakes.settle
FakeClock, FakeLobbyStates, FakeMeasurement, FakePusher = (
    _fakes.FakeClock,
    _fakes.FakeLobbyStates,
    _fakes.FakeMeasurement,
    _fakes.FakePusher,
)
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@dataclass
class FakeStore:
    """The coordinator's store in memory: what each save wrote, in order."""

    saved: list[tuple[SessionState, dict[str, datetime], bool]] = field(default_factory=list)
    rows: dict[str, tuple[SessionState, dict[str, datetime]]] = field(default_factory=dict)
    lost: bool = False

    def add(self, session: Any, state: SessionState, deadlines: Mapping[str, datetime]) -> None:
        self.rows[state.session_id] = (state, dict(deadlines))

    async def save(self, state: SessionState, deadlines: Mapping[str, datetime], *, release_lobby: bool) -> None:
        if self.lost:
            raise LeaseLost("another replica")
        self.saved.append((state, dict(deadlines), release_lobby))
        self.rows[state.session_id] = (state, dict(deadlines))


@dataclass
class WallClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Shell:
    coordinator: Coordinator
    clock: FakeClock
    wall: WallClock
    pusher: FakePusher
    store: FakeStore


def shell(store: FakeStore, wall: WallClock) -> Shell:
    clock, pusher = FakeClock(), FakePusher()
    coordinator = Coordinator(
        settings=SETTINGS, pusher=lambda: pusher, measurement=FakeMeasurement(), lobby_states=FakeLobbyStates(),
        scheduler=clock, store=store, wall_clock=wall, new_id=lambda: "s1",
    )  # fmt: skip
    return Shell(coordinator, clock, wall, pusher, store)


@pytest.fixture
async def first() -> AsyncIterator[Shell]:
    one = shell(FakeStore(), WallClock())
    yield one
    await one.coordinator.aclose()


async def open_and_start(one: Shell) -> str:
    async def commit(state: SessionState, deadlines: Mapping[str, datetime]) -> None:
        one.coordinator.add_row(None, state, deadlines)

    request = NewSession(
        "l1", "j1", ADMIN, (Slot(SPK, "speaker_1"),), (Slot(MIC1, "mic_1"), Slot(MIC2, "mic_2")), SIGNAL
    )
    state = await one.coordinator.open_session(request, commit)
    await one.coordinator.send(state.session_id, StartSpeaker(ADMIN))
    return state.session_id


class TestStoredTransitions:
    async def test_every_transition_is_stored_with_its_deadlines_before_its_pushes(self, first: Shell) -> None:
        sid = await open_and_start(first)
        state, deadlines = first.store.rows[sid]
        assert state.step is Step.AWAITING_READY
        assert deadlines == {"step": T0 + timedelta(seconds=SETTINGS.measurement_ready_timeout_s)}
        first.wall.now = T0 + timedelta(seconds=2)
        await first.coordinator.send(sid, Ready(SPK))
        await first.coordinator.send(sid, Ready(MIC1))
        await first.coordinator.send(sid, Ready(MIC1))  # a repeat changes nothing: not written again
        assert [s.step for s, _, _ in first.store.saved] == [Step.AWAITING_READY] * 3  # start, two answers
        await first.coordinator.send(sid, Ready(MIC2))
        state, deadlines = first.store.rows[sid]
        assert state.step is Step.AWAITING_AUDIO
        assert deadlines == {"step": first.wall.now + timedelta(seconds=SETTINGS.measurement_audio_timeout_s)}

    async def test_a_write_that_fails_refuses_the_message_and_keeps_the_state(self, first: Shell) -> None:
        sid = await open_and_start(first)
        first.store.lost = True
        pushes_before = len(first.pusher.pushes)
        with pytest.raises(LeaseLost):
            await first.coordinator.send(sid, Ready(SPK))
        assert len(first.pusher.pushes) == pushes_before
        assert sid not in first.coordinator.driven()  # another replica drives it now
        assert first.clock.pending_delays_s() == []

    def test_state_round_trips_through_json_and_other_versions_are_refused(self) -> None:
        state = SessionState("s1", "l1", "j1", ADMIN, (Slot(SPK, "speaker_1"),), (Slot(MIC1, "mic_1"),), SIGNAL)
        document = encode(state, {})
        assert decode(STATE_VERSION, document).state == state
        with pytest.raises(UndecodableState):
            decode(STATE_VERSION - 1, document)
        with pytest.raises(UndecodableState):
            decode(STATE_VERSION, {"session": {"session_id": "s1"}, "deadlines": {}})


class TestResume:
    async def test_a_resumed_session_gets_its_command_again_and_its_timer_from_the_deadline(self, first: Shell) -> None:
        sid = await open_and_start(first)
        await first.coordinator.send(sid, Ready(SPK))
        state, deadlines = first.store.rows[sid]
        second = shell(first.store, WallClock(T0 + timedelta(seconds=3)))  # the next process, 3 s later
        try:
            await second.coordinator.resume(state, deadlines)
            await settle(second.coordinator)
            starts = [(ids, d) for ids, e, d in second.pusher.pushes if e == "measurement.start_measurement"]
            assert [ids for ids, _ in starts] == [(MIC1, MIC2)]  # only the devices it still waits for
            assert second.pusher.phases() == ["waiting_for_ready"]
            assert second.clock.pending_delays_s() == [SETTINGS.measurement_ready_timeout_s - 3]
            await second.coordinator.send(sid, Ready(MIC1))
            await second.coordinator.send(sid, Ready(MIC2))
            await second.coordinator.send(sid, SpeakerAudioReady(SPK))
            assert second.coordinator.get(sid).step is Step.AWAITING_RECORDING
        finally:
            await second.coordinator.aclose()

    async def test_a_deadline_that_passed_while_down_fails_the_step_with_step_timeout(self, first: Shell) -> None:
        sid = await open_and_start(first)
        state, deadlines = first.store.rows[sid]
        late = T0 + timedelta(seconds=SETTINGS.measurement_ready_timeout_s + 1)
        second = shell(first.store, WallClock(late))
        try:
            await second.coordinator.resume(state, deadlines)
            await second.clock.advance(0, second.coordinator)
            assert second.coordinator.get(sid).step is Step.FAILED
            _, error = second.pusher.last("measurement.error")
            assert error["code"] == "step_timeout" and error["missing_device_ids"] == [SPK, MIC1, MIC2]
            assert second.store.rows[sid][0].step is Step.FAILED
        finally:
            await second.coordinator.aclose()


# --- the database store ------------------------------------------------------------------------------------


@pytest.fixture
async def lobby_app(database_url: str, engine, settings, gateway) -> AsyncIterator[LobbyApp]:
    database = Database.open(database_url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway.handler)) as http:
        broadcaster = Broadcaster(BroadcastClient("http://gateway.test", settings.internal_auth_token, http))
        app = LobbyApp(settings, database, http, broadcaster, None)
        app.coordinator = Coordinator(
            settings=settings, pusher=lambda: broadcaster, measurement=FakeMeasurement(),
            lobby_states=FakeLobbyStates(), store=None,
        )  # fmt: skip
        yield app
        await app.coordinator.aclose()
    await database.dispose()


async def running_lobby(app: LobbyApp) -> uuid.UUID:
    lobby_id = uuid.uuid4()
    async with app.database.sessionmaker() as session:
        lobby = Lobby(id=lobby_id, code=uuid.uuid4().hex[:6].upper(), creator_device_id=ADMIN)
        lobby.state = LobbyState.MEASUREMENT_RUNNING
        lobby.participants = [Participant(device_id=d) for d in (ADMIN, SPK, MIC1)]
        session.add(lobby)
        await session.commit()
    return lobby_id


def row_state(lobby_id: uuid.UUID, session_id: str) -> SessionState:
    return SessionState(session_id, str(lobby_id), "j1", ADMIN, (Slot(SPK, "s1"),), (Slot(MIC1, "m1"),), SIGNAL)


class TestDatabaseStore:
    async def test_leases_are_fenced_and_only_expired_ones_are_taken_over(self, lobby_app: LobbyApp) -> None:
        lobby_id = await running_lobby(lobby_app)
        a = DatabaseStore(lobby_app, Replica("replica-a", "http://a", 5.0))
        b = DatabaseStore(lobby_app, Replica("replica-b", "http://b", 5.0))
        sid = f"s-{uuid.uuid4().hex[:8]}"
        state = row_state(lobby_id, sid)
        async with lobby_app.database.sessionmaker() as session:
            a.add(session, state, {})
            await session.commit()
        assert sid not in {r.session_id for r in await b.claim_resumable()}  # a's lease is valid
        assert sid in {r.session_id for r in await a.claim_resumable()}  # a restarted takes its own back
        async with lobby_app.database.sessionmaker() as session:
            row = await session.get(MeasurementSession, sid)
            assert row is not None
            row.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)  # a died
            await session.commit()
        claimed = [r for r in await b.claim_resumable() if r.session_id == sid]
        assert claimed and claimed[0].owner == "replica-b" and claimed[0].owner_url == "http://b"
        with pytest.raises(LeaseLost):
            await a.save(state, {}, release_lobby=False)  # a, back from the dead, must not overwrite b
        await b.save(state, {}, release_lobby=True)
        async with lobby_app.database.sessionmaker() as session:
            lobby = await session.scalar(select(Lobby).where(Lobby.id == lobby_id))
            assert lobby is not None and lobby.state is LobbyState.OPEN  # released in the same transaction

    async def test_a_state_that_cannot_be_decoded_cancels_with_service_restarted(
        self, lobby_app: LobbyApp, gateway
    ) -> None:
        lobby_id = await running_lobby(lobby_app)
        store = DatabaseStore(lobby_app, Replica("replica-a", "", 5.0))
        sid = f"s-{uuid.uuid4().hex[:8]}"
        async with lobby_app.database.sessionmaker() as session:
            store.add(session, row_state(lobby_id, sid), {})
            await session.flush()
            row = await session.get(MeasurementSession, sid)
            assert row is not None
            row.state_version = STATE_VERSION + 1  # written by another version
            await session.commit()
        await restart.resume_sessions(lobby_app, store)
        cancelled = [p for p in gateway.pushes if p.event == "measurement.session_cancelled"]
        assert [(p.data["session_id"], p.data["reason"]) for p in cancelled] == [(sid, "service_restarted")]
        assert set(cancelled[0].device_ids) == {ADMIN, SPK, MIC1}
        async with lobby_app.database.sessionmaker() as session:
            lobby = await session.scalar(select(Lobby).where(Lobby.id == lobby_id))
            row = await session.get(MeasurementSession, sid)
            assert lobby is not None and lobby.state is LobbyState.OPEN
            assert row is not None and not row.running and row.step == "cancelled"


class TestRelay:
    async def test_another_replicas_session_hears_of_connections_and_of_its_lobby_closing(
        self, lobby_app: LobbyApp
    ) -> None:
        lobby_id = await running_lobby(lobby_app)
        b = DatabaseStore(lobby_app, Replica("replica-b", "http://b.test", 5.0))
        sid = f"s-{uuid.uuid4().hex[:8]}"
        async with lobby_app.database.sessionmaker() as session:
            b.add(session, row_state(lobby_id, sid), {})  # driven by b, lease valid
            await session.commit()
        sent: list[tuple[str, dict[str, Any]]] = []

        def answer(request: httpx.Request) -> httpx.Response:
            sent.append((str(request.url), json.loads(request.content)))
            return httpx.Response(200, json={"data": {}})

        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            app_a = LobbyApp(lobby_app.settings, lobby_app.database, http, lobby_app.broadcaster, None)
            app_a.coordinator = lobby_app.coordinator
            relay = Relay(app_a, DatabaseStore(app_a, Replica("replica-a", "http://a.test", 5.0)))
            await relay.connection_changed(SPK, False, set())
            await relay.connection_changed("stranger", False, set())  # in no session: nobody is told
            await relay.lobby_closed(str(lobby_id))
        connection = {"session_id": sid, "device_id": SPK, "connected": False}
        cancel = {
            "event": "measurement.cancel_session",
            "request_id": None,
            "device_id": ADMIN,
            "data": {"session_id": sid, "reason": "lobby_closed"},
        }
        assert (f"http://b.test{CONNECTION_PATH}", connection) in sent
        assert ("http://b.test/gateway/handle", cancel) in sent
        assert not [body for _, body in sent if body.get("device_id") == "stranger"]


class TestRetention:
    async def test_finished_rows_are_deleted_after_the_retention_running_ones_never(self, lobby_app: LobbyApp) -> None:
        lobby_id = await running_lobby(lobby_app)
        store = DatabaseStore(lobby_app, Replica("replica-r", "", 5.0))
        old, fresh, running = (f"s-{uuid.uuid4().hex[:8]}" for _ in range(3))
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        async with lobby_app.database.sessionmaker() as session:
            for sid in (old, fresh, running):
                store.add(session, row_state(lobby_id, sid), {})
            await session.flush()
            for sid, finished, updated_at in ((old, True, long_ago), (fresh, True, None), (running, False, long_ago)):
                row = await session.get(MeasurementSession, sid)
                assert row is not None
                row.running = not finished
                if updated_at is not None:
                    row.updated_at = updated_at
            await session.commit()
        await store.forget_finished(3600.0)
        async with lobby_app.database.sessionmaker() as session:
            left = {sid for sid in (old, fresh, running) if await session.get(MeasurementSession, sid) is not None}
        assert left == {fresh, running}


class TestResumeFromTheDatabase:
    async def test_a_connection_change_the_session_missed_is_applied_when_it_resumes(self, lobby_app: LobbyApp) -> None:
        lobby_id = await running_lobby(lobby_app)
        store = DatabaseStore(lobby_app, Replica(f"replica-{uuid.uuid4().hex[:6]}", "", 5.0))
        sid = f"s-{uuid.uuid4().hex[:8]}"
        mic = f"mic-{uuid.uuid4().hex[:6]}"  # device_presence is per device: one of this test's own
        state = SessionState(sid, str(lobby_id), "j1", ADMIN, (Slot(SPK, "s1"),), (Slot(mic, "m1"),), SIGNAL)
        async with lobby_app.database.sessionmaker() as session:
            store.add(session, state, {})
            session.add(DevicePresence(device_id=mic, connected=False))  # it went while nobody drove the session
            await session.commit()
        coordinator = Coordinator(
            settings=lobby_app.settings, pusher=lambda: lobby_app.broadcaster, measurement=FakeMeasurement(),
            lobby_states=FakeLobbyStates(), store=store,
        )  # fmt: skip
        lobby_app.coordinator = coordinator
        try:
            assert await restart.resume_sessions(lobby_app, store) >= 1
            assert coordinator.get(sid).disconnected == {mic}
            async with lobby_app.database.sessionmaker() as session:
                row = await session.get(MeasurementSession, sid)
                assert row is not None and decode(row.state_version, row.state).state.disconnected == {mic}
        finally:
            await coordinator.aclose()
