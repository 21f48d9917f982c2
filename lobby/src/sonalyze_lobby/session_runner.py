"""The thin async shell around `measurement_protocol`: keeps the sessions, carries out the effects.

`Coordinator.send` advances one session under its lock and runs the effects in order: pushes go
through the lobby's broadcaster, timers through a `Scheduler` (a fake clock in tests), upload checks
and the analysis through `MeasurementClient`, lobby state changes through the lobby's service layer.
Outcomes come back into the state machine as messages (`UploadVerified`, `TimerFired`, ...).
With a `SessionStore` (the lobby's database, `session_store`), every transition's state and timer deadlines
are written before its effects run, and `resume` picks a stored session up again after a restart or from a
replica that died: timers re-armed from their deadlines, the awaited command sent again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.measurement_protocol import (
    AnalysisFailed,
    AnalysisFinished,
    Analyze,
    CancelSession,
    CancelTimer,
    ConnectionChanged,
    Effect,
    Message,
    ReleaseLobby,
    SendPush,
    SessionState,
    SignalInfo,
    Slot,
    StartTimer,
    Step,
    TimerFired,
    UploadVerified,
    VerifyUpload,
    advance,
    new_session,
    payloads,
    status,
)
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.errors import AppError, Conflict, Forbidden, NotFound, ServiceUnavailable
from sonalyze_protocol.logs import bind_context
from sonalyze_protocol.measurement_events import PHASE_UPDATE, SessionStatus

logger = logging.getLogger("sonalyze.lobby.measurement")
WARM_UP_ATTEMPTS = 180


# --- collaborators -----------------------------------------------------------------------------------


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs ``callback`` after ``delay_s`` seconds unless cancelled."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable: ...


class LoopScheduler:
    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay_s, callback)


class Pusher(Protocol):
    async def push(self, device_ids: Iterable[str], event: str, data: dict[str, Any]) -> Any: ...


class LobbyStates(Protocol):
    """Moves a lobby back to ``open`` once its session ends (through the lobby's service layer)."""

    async def release(self, lobby_id: str, actor_device_id: str) -> None: ...


class Measurement(Protocol):
    """What the protocol asks the measurement service (`MeasurementClient` over HTTP)."""

    async def get_signal(self, sample_rate_hz: int) -> SignalInfo: ...

    async def announce_recording(
        self, job_id: str, upload_name: str, *, speaker_slot_id: str, mic_slot_id: str, device_id: str, signal_id: str
    ) -> None: ...

    async def upload_exists(self, job_id: str, upload_name: str) -> bool: ...

    async def register_session(self, session_id: str, job_id: str, signal_id: str) -> None: ...

    async def analyze(self, job_id: str, timeout_s: float) -> Any: ...


class LeaseLost(ServiceUnavailable):
    """Another lobby replica drives the session now: this one must not write its state."""


class Relay(Protocol):
    """What the replicas driving other sessions must hear (`replicas.Relay`)."""

    async def connection_changed(self, device_id: str, connected: bool, driven: set[str]) -> None: ...

    async def lobby_closed(self, lobby_id: str) -> None: ...


class SessionStore(Protocol):
    """Where each transition's state goes before its effects (`session_store.DatabaseStore`)."""

    def add(self, session: Any, state: SessionState, deadlines: Mapping[str, datetime]) -> None: ...

    async def save(
        self, state: SessionState, deadlines: Mapping[str, datetime], *, release_lobby: bool
    ) -> Callable[[], Awaitable[None]] | None: ...


@dataclass(frozen=True, slots=True)
class NewSession:
    """A checked request for a session: the lobby rules have been applied by the caller."""

    lobby_id: str
    job_id: str
    admin_device_id: str
    speakers: tuple[Slot, ...]
    microphones: tuple[Slot, ...]
    signal: SignalInfo
    disconnected: frozenset[str] = frozenset()
    upload_base_url: str = ""
    session_id: str | None = None  # chosen by the caller (registered with the measurement service first)


# --- the coordinator ---------------------------------------------------------------------------------


class Coordinator:
    """All measurement sessions of this lobby process; one lock per session keeps their effects in order."""

    def __init__(
        self,
        *,
        settings: Settings,
        pusher: Callable[[], Pusher],
        measurement: Measurement,
        lobby_states: LobbyStates,
        scheduler: Scheduler | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        store: SessionStore | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.timeouts = settings.protocol_timeouts
        self.measurement = measurement
        self._pusher = pusher
        self._lobby_states = lobby_states
        self._scheduler = scheduler or LoopScheduler()
        self._new_id = new_id
        self.store = store
        # replicas: tells the replicas driving other sessions what concerns them (`replicas.Relay`)
        self.relay: Relay | None = None
        self._wall_clock = wall_clock
        self._sessions: dict[str, SessionState] = {}
        self._deadlines: dict[str, dict[str, datetime]] = {}  # per session: timer key -> wall-clock deadline
        self._locks: dict[str, asyncio.Lock] = {}
        self._lobby_locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[tuple[str, str], Cancellable] = {}
        self._expiries: dict[str, Cancellable] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- lookups ---

    def new_session_id(self) -> str:
        return self._new_id()

    def get(self, session_id: str) -> SessionState:
        state = self._sessions.get(session_id)
        if state is None:
            raise NotFound(f"measurement session {session_id} does not exist")
        return state

    def holding(self, lobby_id: str) -> SessionState | None:
        """The session that keeps ``lobby_id`` in ``measurement_running``, if any."""
        return next((s for s in self._sessions.values() if s.lobby_id == lobby_id and s.holds_lobby), None)

    def status_for(self, session_id: str, device_id: str) -> SessionStatus:
        state = self.get(session_id)
        if not state.is_member(device_id):
            raise Forbidden(f"device {device_id} is not part of measurement session {session_id}")
        return status(state)

    def lobby_lock(self, lobby_id: str) -> asyncio.Lock:
        """Held while a session for ``lobby_id`` is being created, so two requests cannot both win."""
        return self._lobby_locks.setdefault(lobby_id, asyncio.Lock())

    def warm_up(self) -> None:
        """Fetch the default signal's description in the background, so the first ``create_session``
        does not pay for the measurement service generating the sweep (the app waits only 500 ms)."""
        self._spawn(self._warm_up())

    async def _warm_up(self) -> None:
        delay_s = 0.25
        for _ in range(WARM_UP_ATTEMPTS):
            try:
                await self.measurement.get_signal(self.settings.measurement_sample_rate_hz)
                logger.info("signal for %d Hz known", self.settings.measurement_sample_rate_hz)
                return
            except Exception as exc:  # the measurement service may start after us
                logger.debug("signal warm-up: %s; retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)  # short: the suite's services start together
        logger.warning("the measurement service did not describe its signal; the first session will fetch it")

    # --- changes ---

    async def open_session(
        self,
        request: NewSession,
        commit: Callable[[SessionState, Mapping[str, datetime]], Awaitable[None]] | None = None,
    ) -> SessionState:
        """Register a new session (the caller holds `lobby_lock`). ``commit`` writes the lobby's change and
        (`add_row`) the session's row in one transaction, before the session starts."""
        if (other := self.holding(request.lobby_id)) is not None:
            raise Conflict(f"lobby {request.lobby_id} already has measurement session {other.session_id}")
        session_id = request.session_id or self._new_id()
        state, effects = new_session(
            session_id=session_id,
            lobby_id=request.lobby_id,
            job_id=request.job_id,
            admin_device_id=request.admin_device_id,
            speakers=request.speakers,
            microphones=request.microphones,
            signal=request.signal,
            timeouts=self.timeouts,
            disconnected=request.disconnected,
            upload_base_url=request.upload_base_url,
        )
        deadlines = self._deadlines_after(session_id, state, effects)
        if commit is not None:
            await commit(state, deadlines)
        self._deadlines[session_id] = deadlines
        self._sessions[session_id] = state
        self._locks[session_id] = asyncio.Lock()
        async with self._locks[session_id]:
            follow_ups = await self._carry_out(state, effects)
        await self._follow(follow_ups)
        logger.info(
            "measurement session %s opened in lobby %s: %d speakers x %d microphones",
            session_id,
            request.lobby_id,
            len(request.speakers),
            len(request.microphones),
        )
        return self._sessions[session_id]

    async def send(self, session_id: str, message: Message) -> SessionState:
        """Advance one session by ``message`` and carry out the effects; raises `AppError` if refused."""
        self.get(session_id)
        async with self._locks[session_id]:
            before = self._sessions[session_id]
            state, effects = advance(before, message)
            deadlines = self._deadlines_after(session_id, state, effects)
            announce = await self._persist(before, state, deadlines, effects)
            self._deadlines[session_id] = deadlines
            self._sessions[session_id] = state
            if state.step != before.step:
                logger.info("session %s: %s -> %s (%s)", session_id, before.step, state.step, type(message).__name__)
            follow_ups = await self._carry_out(state, effects, announce)
        await self._follow(follow_ups)
        return self._sessions.get(session_id, state)

    # --- persistence and resuming ---

    def add_row(self, session: Any, state: SessionState, deadlines: Mapping[str, datetime]) -> None:
        """Add a new session's row to the caller's transaction (no store: nothing)."""
        if self.store is not None:
            self.store.add(session, state, deadlines)

    def _deadlines_after(self, session_id: str, state: SessionState, effects: list[Effect]) -> dict[str, datetime]:
        """The wall-clock deadline of every timer ``state`` has armed, after ``effects``."""
        now = self._wall_clock()
        deadlines = dict(self._deadlines.get(session_id, {}))
        for effect in effects:
            if isinstance(effect, StartTimer):
                deadlines[effect.key] = now + timedelta(seconds=effect.seconds)
            elif isinstance(effect, CancelTimer):
                deadlines.pop(effect.key, None)
        return {key: deadline for key, deadline in deadlines.items() if key in state.timers}

    async def _persist(
        self, before: SessionState, state: SessionState, deadlines: dict[str, datetime], effects: list[Effect]
    ) -> Callable[[], Awaitable[None]] | None:
        """Write a changed state (and its lobby's release) before any effect runs; a failed write refuses
        the message (the state stays as it was)."""
        if self.store is None or (state == before and deadlines == self._deadlines.get(state.session_id)):
            return None
        release = any(isinstance(effect, ReleaseLobby) for effect in effects)
        try:
            return await self.store.save(state, deadlines, release_lobby=release)
        except LeaseLost:
            self._drop(state.session_id)
            raise

    async def resume(self, state: SessionState, deadlines: Mapping[str, datetime]) -> None:
        """Drive a stored session again (after a restart, or taken over from a replica): timers re-armed from
        their deadlines (one that passed fires at once: the usual ``step_timeout``), the awaited devices sent
        their command again, everyone the current phase, an interrupted analysis started again."""
        session_id = state.session_id
        if session_id in self._sessions or self._closed:
            return
        self._sessions[session_id] = state
        self._deadlines[session_id] = {k: v for k, v in deadlines.items() if k in state.timers}
        self._locks[session_id] = asyncio.Lock()
        async with self._locks[session_id]:
            now = self._wall_clock()
            for key, generation in state.timers.items():
                deadline = deadlines.get(key)
                delay_s = max(0.0, (deadline - now).total_seconds()) if deadline is not None else 0.0
                self._start_timer(session_id, key, delay_s, generation)
            effects: list[Effect] = list(payloads.command_pushes(state, state.awaited))
            effects.append(SendPush(state.members, PHASE_UPDATE, payloads.phase_progress(state)))
            if state.step is Step.ANALYZING:
                effects.append(Analyze(state.job_id))
            follow_ups = await self._carry_out(state, effects)
        await self._follow(follow_ups)
        logger.info("measurement session %s resumed in step %s", session_id, state.step.value)

    def retain(self, state: SessionState) -> None:
        """Keep a finished session read from the store, so its status stays readable here too."""
        if state.is_final and state.session_id not in self._sessions and not self._closed:
            self._sessions[state.session_id] = state
            self._locks[state.session_id] = asyncio.Lock()
            self._expiries[state.session_id] = self._scheduler.call_later(
                self.settings.measurement_session_retention_s, lambda: self._forget(state.session_id)
            )

    def driven(self) -> set[str]:
        """The sessions this process drives now."""
        return set(self._sessions)

    def _drop(self, session_id: str) -> None:
        """Stop driving a session another replica took over: its timers stop, its state is forgotten."""
        for key in [k for k in self._timers if k[0] == session_id]:
            self._timers.pop(key).cancel()
        if (expiry := self._expiries.pop(session_id, None)) is not None:
            expiry.cancel()
        self._sessions.pop(session_id, None)
        self._deadlines.pop(session_id, None)
        logger.warning("measurement session %s is driven by another replica now", session_id)

    async def device_connection_changed(self, device_id: str, connected: bool) -> None:
        """Called by the lobby on ``device.connected`` / ``device.disconnected``."""
        for session_id, state in list(self._sessions.items()):
            if device_id in state.device_ids and not state.is_final:
                await self._send_quietly(session_id, ConnectionChanged(device_id, connected))
        if self.relay is not None:
            try:
                await self.relay.connection_changed(device_id, connected, set(self._sessions))
            except Exception:  # the other replicas' sessions have their grace timers and resends
                logger.exception("relaying %s's connection to the other replicas failed", device_id)

    async def lobby_closed(self, lobby_id: str) -> None:
        """The lobby closed (its admin left): its running session is cancelled for everyone."""
        if (state := self.holding(lobby_id)) is not None:
            await self._send_quietly(state.session_id, CancelSession(state.admin_device_id, "lobby_closed"))
        elif self.relay is not None:  # its session may be driven by another replica
            await self.relay.lobby_closed(lobby_id)

    async def aclose(self) -> None:
        """Stop every timer and background task (lobby shutdown); a stored session resumes in the next process."""
        self._closed = True
        for handle in [*self._timers.values(), *self._expiries.values()]:
            handle.cancel()
        self._timers.clear()
        self._expiries.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- effects ---

    async def _carry_out(
        self, state: SessionState, effects: list[Effect], announce: Callable[[], Awaitable[None]] | None = None
    ) -> list[Callable[[], Awaitable[None]]]:
        """Run the effects in order; return the calls whose answers must be fed back after the lock.
        With a store, the lobby was released in the transition's transaction: ``announce`` pushes it."""
        follow_ups: list[Callable[[], Awaitable[None]]] = []
        session_id = state.session_id
        for effect in effects:
            try:
                match effect:
                    case SendPush(device_ids=device_ids, event=event, data=data):
                        await self._pusher().push(device_ids, event, dict(data))
                    case StartTimer(key=key, seconds=seconds, generation=generation):
                        self._start_timer(session_id, key, seconds, generation)
                    case CancelTimer(key=key):
                        if (handle := self._timers.pop((session_id, key), None)) is not None:
                            handle.cancel()
                    case VerifyUpload():
                        follow_ups.append(self._verifier(state, effect))
                    case Analyze(job_id=job_id):
                        self._spawn(self._analyze(session_id, job_id))
                    case ReleaseLobby(lobby_id=lobby_id):
                        if self.store is None:
                            await self._lobby_states.release(lobby_id, state.admin_device_id)
                        elif announce is not None:
                            await announce()
            except Exception:  # one failed effect (a push, a DB write) must not skip the rest
                logger.exception("session %s: effect %r failed", session_id, effect)
        if state.is_final and session_id not in self._expiries and not self._closed:
            self._expiries[session_id] = self._scheduler.call_later(
                self.settings.measurement_session_retention_s, lambda: self._forget(session_id)
            )
        return follow_ups

    async def _follow(self, follow_ups: list[Callable[[], Awaitable[None]]]) -> None:
        for follow_up in follow_ups:
            await follow_up()

    def _verifier(self, state: SessionState, effect: VerifyUpload) -> Callable[[], Awaitable[None]]:
        async def verify() -> None:
            # which slots the upload belongs to, whatever its name (ours or the app's)
            await self.measurement.announce_recording(
                state.job_id,
                effect.upload_name,
                speaker_slot_id=effect.speaker_slot_id,
                mic_slot_id=effect.mic_slot_id,
                device_id=effect.device_id,
                signal_id=state.signal.signal_id,
            )
            if not await self.measurement.upload_exists(state.job_id, effect.upload_name):
                raise NotFound(
                    f"upload {effect.upload_name} is not stored in job {state.job_id}; "
                    "upload it, then send measurement.recording_uploaded again"
                )
            await self.send(state.session_id, UploadVerified(effect.device_id, effect.upload_name, effect.cycle))

        return verify

    def _start_timer(self, session_id: str, key: str, seconds: float, generation: int) -> None:
        if (old := self._timers.pop((session_id, key), None)) is not None:
            old.cancel()
        if self._closed:
            return

        def fire() -> None:
            self._timers.pop((session_id, key), None)
            self._spawn(self._send_quietly(session_id, TimerFired(key, generation)))

        self._timers[(session_id, key)] = self._scheduler.call_later(seconds, fire)

    async def _analyze(self, session_id: str, job_id: str) -> None:
        with bind_context(request_id=f"analysis-{session_id[:8]}"):
            try:
                body = await self.measurement.analyze(job_id, self.timeouts.analysis_s)
            except AppError as exc:
                logger.warning("analysis of job %s failed: %s", job_id, exc.message)
                await self._send_quietly(session_id, AnalysisFailed(exc.message))
                return
            except Exception as exc:
                logger.exception("analysis of job %s failed unexpectedly", job_id)
                await self._send_quietly(session_id, AnalysisFailed(f"{type(exc).__name__}: {exc}"))
                return
            results = body.get("results", body) if isinstance(body, dict) else body
            if isinstance(results, list):
                # the web page's plot data (~75 kB per recording) stays with the job (GET /v1/jobs/{id}): pushes stay small
                results = [
                    {k: v for k, v in item.items() if k != "plots"} if isinstance(item, dict) else item
                    for item in results
                ]
            summary = body.get("summary") if isinstance(body, dict) else None
            await self._send_quietly(session_id, AnalysisFinished(results, summary))

    async def _send_quietly(self, session_id: str, message: Message) -> None:
        """Internal messages never fail the caller (a timer, a connection event): errors are logged."""
        if session_id not in self._sessions:
            return
        try:
            await self.send(session_id, message)
        except AppError as exc:
            logger.warning("session %s: %s refused: %s", session_id, type(message).__name__, exc.message)
        except Exception:
            logger.exception("session %s: %s failed", session_id, type(message).__name__)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        if self._closed:
            if asyncio.iscoroutine(coroutine):
                coroutine.close()
            return
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, session_id: str) -> None:
        self._expiries.pop(session_id, None)
        state = self._sessions.get(session_id)
        if state is not None and state.is_final:
            del self._sessions[session_id]
            self._deadlines.pop(session_id, None)
            self._locks.pop(session_id, None)


# --- wiring into the lobby app -----------------------------------------------------------------------


class ServiceLobbyStates:
    """`LobbyStates` through the lobby's own service layer: its own DB session, a `LobbyEvent`, a push."""

    def __init__(self, app: LobbyApp) -> None:
        self._app = app

    async def release(self, lobby_id: str, actor_device_id: str) -> None:
        from sonalyze_lobby import service
        from sonalyze_lobby.models import LobbyState

        async with self._app.context(actor_device_id, None) as ctx:
            lobby = await service.get_lobby(ctx.session, uuid.UUID(lobby_id), for_update=True)
            if lobby.state is not LobbyState.MEASUREMENT_RUNNING:  # closed meanwhile, or already open
                await ctx.session.commit()
                return
            await service.set_state(ctx, lobby, LobbyState.OPEN)
