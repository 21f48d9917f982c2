"""After a restart (or a replica's death): resume the stored measurement sessions; tell phones of lost ones.

`resume_sessions` takes over every running session this replica may drive (its own from before the
restart, or one whose owner's lease expired) and hands it to `Coordinator.resume`. A session whose state
cannot be decoded (another ``STATE_VERSION``) is ended: its lobby goes back to ``open`` and its phones get
``measurement.session_cancelled`` with reason ``service_restarted``; so does a lobby left
``measurement_running`` with no running session at all (a session of a version that kept them in memory,
or ``lobby.start`` without a session), once, when the process starts.
`keep_leases` runs for the process's life: it renews this replica's leases, takes over expired ones and
deletes the rows of sessions finished longer ago than ``MEASUREMENT_SESSION_RETENTION_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Final

from sqlalchemy import select

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.measurement_protocol import ConnectionChanged, SessionState
from sonalyze_lobby.models import DevicePresence, Lobby, LobbyState
from sonalyze_lobby.session_store import DatabaseStore, UndecodableState, decode
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.errors import AppError
from sonalyze_protocol.measurement_events import SessionCancelled

logger = logging.getLogger("sonalyze.lobby.restart")

RESTART_REASON: Final = "service_restarted"


async def resume_sessions(app: LobbyApp, store: DatabaseStore) -> int:
    """Resume every session this replica can take over; returns how many it resumed (best effort)."""
    coordinator = app.coordinator
    resumed = 0
    for row in await store.claim_resumable(exclude=coordinator.driven()):
        started = time.monotonic()
        try:
            stored = decode(row.state_version, row.state)
        except UndecodableState as exc:
            logger.warning("measurement session %s cannot be resumed (%s): cancelled", row.session_id, exc)
            await store.end_undecodable(row.session_id)
            await _release(app, row.lobby_id, row.session_id)
            continue
        try:
            await coordinator.resume(stored.state, stored.deadlines)
            await _reconcile_presence(app, stored.state)
            resumed += 1
            logger.warning(
                "resumed measurement session %s in step %s (%.0f ms)",
                row.session_id,
                stored.state.step.value,
                (time.monotonic() - started) * 1000,
            )
        except Exception:  # one session must not keep the others waiting
            logger.exception("could not resume measurement session %s", row.session_id)
    return resumed


async def _reconcile_presence(app: LobbyApp, state: SessionState) -> None:
    """Connection changes the session missed while nobody drove it (recorded meanwhile by another replica, or
    before the crash but after the state was written) reach it now."""
    async with app.database.sessionmaker() as session:
        query = select(DevicePresence.device_id, DevicePresence.connected).where(
            DevicePresence.device_id.in_(state.device_ids)
        )
        presence: dict[str, bool] = dict((await session.execute(query)).all())
        await session.commit()
    for device_id, connected in presence.items():
        if connected == (device_id in state.disconnected):  # the stored state says otherwise
            try:
                await app.coordinator.send(state.session_id, ConnectionChanged(device_id, connected))
            except AppError as exc:
                logger.warning("session %s: %s's connection not applied: %s", state.session_id, device_id, exc.message)


async def release_orphaned_lobbies(app: LobbyApp, store: DatabaseStore) -> int:
    """Reopen lobbies left ``measurement_running`` without a running session; returns how many."""
    held = await store.lobbies_with_running_sessions()
    async with app.database.sessionmaker() as session:
        query = select(Lobby.id).where(Lobby.state == LobbyState.MEASUREMENT_RUNNING, Lobby.closed_at.is_(None))
        lobby_ids = [lobby_id for lobby_id in (await session.execute(query)).scalars() if lobby_id not in held]
    for lobby_id in lobby_ids:
        try:
            await _release(app, lobby_id, None)
        except Exception:  # one lobby must not keep the others waiting
            logger.exception("could not reopen lobby %s after the restart", lobby_id)
    if lobby_ids:
        logger.warning("reopened %d lobbies left measurement_running without a session", len(lobby_ids))
    return len(lobby_ids)


async def keep_leases(app: LobbyApp, store: DatabaseStore) -> None:
    """Resume what can be resumed now, reopen orphaned lobbies, then renew this replica's leases and take
    over expired ones every third of the lease, until cancelled."""
    await resume_sessions(app, store)
    await release_orphaned_lobbies(app, store)
    interval_s = store.replica.lease_s / 3
    while True:
        await asyncio.sleep(interval_s)
        try:
            await store.renew()
            await resume_sessions(app, store)
            await store.forget_finished(app.settings.measurement_session_retention_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be down for a while: try again next round
            logger.exception("renewing the measurement sessions' leases failed")


async def _release(app: LobbyApp, lobby_id: uuid.UUID, session_id: str | None) -> None:
    # the lobby itself acts: no device (the change is logged without an actor)
    async with app.context(None, None) as ctx:  # type: ignore[arg-type]
        lobby = await service.get_lobby(ctx.session, lobby_id, for_update=True)
        if lobby.state is not LobbyState.MEASUREMENT_RUNNING or app.coordinator.holding(str(lobby_id)) is not None:
            await ctx.session.commit()
            return
        phones = [p.device_id for p in lobby.joined]
        await service.set_state(ctx, lobby, LobbyState.OPEN)
    data: SessionCancelled = {
        "session_id": session_id,
        "lobby_id": str(lobby_id),
        "reason": RESTART_REASON,
        "cancelled_by": None,
        "message": "the lobby service restarted and could not resume the running measurement; start it again",
    }
    await app.broadcaster.push(phones, events.SESSION_CANCELLED, dict(data))


__all__ = ["RESTART_REASON", "keep_leases", "release_orphaned_lobbies", "resume_sessions"]
