"""The thin async shell around `measurement_protocol`: keeps the sessions, carries out the effects.

`Coordinator.send` advances one session under its lock and runs the effects in order: pushes go
through the lobby's broadcaster, timers through a `Scheduler` (a fake clock in tests), upload checks
and the analysis through `MeasurementClient`, lobby state changes through the lobby's service layer.
Outcomes come back into the state machine as messages (`UploadVerified`, `TimerFired`, ...).
Sessions live in memory (the spec's choice): a lobby restart forgets them, and a lobby left in
``measurement_running`` without a session may start a new one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
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
    TimerFired,
    UploadVerified,
    VerifyUpload,
    advance,
    new_session,
    status,
)
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.errors import AppError, Conflict, Forbidden, NotFound
from sonalyze_protocol.logs import bind_context
from sonalyze_protocol.measurement_events import SessionStatus

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
    ) -> None:
        self.settings = settings
        self.timeouts = settings.protocol_timeouts
        self.measurement = measurement
        self._pusher = pusher
        self._lobby_states = lobby_states
        self._scheduler = scheduler or LoopScheduler()
        self._new_id = new_id
        self._sessions: dict[str, SessionState] = {}
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

    async def open_session(self, request: NewSession) -> SessionState:
        """Register a new session (the caller holds `lobby_lock` and has set the lobby's state)."""
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
            self._sessions[session_id] = state
            if state.step != before.step:
                logger.info("session %s: %s -> %s (%s)", session_id, before.step, state.step, type(message).__name__)
            follow_ups = await self._carry_out(state, effects)
        await self._follow(follow_ups)
        return self._sessions.get(session_id, state)

    async def device_connection_changed(self, device_id: str, connected: bool) -> None:
        """Called by the lobby on ``device.connected`` / ``device.disconnected``."""
        for session_id, state in list(self._sessions.items()):
            if device_id in state.device_ids and not state.is_final:
                await self._send_quietly(session_id, ConnectionChanged(device_id, connected))

    async def lobby_closed(self, lobby_id: str) -> None:
        """The lobby closed (its admin left): its running session is cancelled for everyone."""
        if (state := self.holding(lobby_id)) is not None:
            await self._send_quietly(state.session_id, CancelSession(state.admin_device_id, "lobby_closed"))

    async def aclose(self) -> None:
        """Stop every timer and background task (lobby shutdown); sessions are not persisted."""
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

    async def _carry_out(self, state: SessionState, effects: list[Effect]) -> list[Callable[[], Awaitable[None]]]:
        """Run the effects in order; return the calls whose answers must be fed back after the lock."""
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
                        await self._lobby_states.release(lobby_id, state.admin_device_id)
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
