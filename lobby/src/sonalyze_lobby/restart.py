"""After a restart: tell the phones of every measurement session the lobby lost, and reopen their lobbies.

The coordinator keeps running sessions in memory, so a lobby process that restarts has none, while
the database still says ``measurement_running``. Until sessions survive restarts, each such lobby goes
back to ``open`` (pushing ``lobby.updated``) and its joined phones get ``measurement.session_cancelled``
with reason ``service_restarted``, so nobody waits for a step that will never come.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

from sqlalchemy import select

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.models import Lobby, LobbyState
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.measurement_events import SessionCancelled

logger = logging.getLogger("sonalyze.lobby.restart")

RESTART_REASON: Final = "service_restarted"


async def release_lost_sessions(app: LobbyApp) -> int:
    """Reopen every lobby left ``measurement_running`` and notify its phones; returns how many (best effort)."""
    async with app.database.sessionmaker() as session:
        query = select(Lobby.id).where(Lobby.state == LobbyState.MEASUREMENT_RUNNING, Lobby.closed_at.is_(None))
        lobby_ids = list((await session.execute(query)).scalars())
    for lobby_id in lobby_ids:
        try:
            await _release(app, lobby_id)
        except Exception:  # one lobby must not keep the others waiting
            logger.exception("could not reopen lobby %s after the restart", lobby_id)
    if lobby_ids:
        logger.warning("reopened %d lobbies whose measurement sessions were lost in a restart", len(lobby_ids))
    return len(lobby_ids)


async def _release(app: LobbyApp, lobby_id: uuid.UUID) -> None:
    # the lobby itself acts: no device (the change is logged without an actor)
    async with app.context(None, None) as ctx:  # type: ignore[arg-type]
        lobby = await service.get_lobby(ctx.session, lobby_id, for_update=True)
        started_since = app.coordinator.holding(str(lobby_id)) is not None
        if lobby.state is not LobbyState.MEASUREMENT_RUNNING or started_since:
            await ctx.session.commit()
            return
        phones = [p.device_id for p in lobby.joined]
        await service.set_state(ctx, lobby, LobbyState.OPEN)
    data: SessionCancelled = {
        "session_id": None,  # the session's id was in the lost memory too
        "lobby_id": str(lobby_id),
        "reason": RESTART_REASON,
        "cancelled_by": None,
        "message": "the lobby service restarted and lost the running measurement; start it again",
    }
    await app.broadcaster.push(phones, events.SESSION_CANCELLED, dict(data))


__all__ = ["RESTART_REASON", "release_lost_sessions"]
