"""After a restart: tell the phones of every measurement session the lobby lost, and reopen their lobbies.

The coordinator keeps running sessions in memory, so a lobby process that restarts has none, while
the database still says ``measurement_running``. Until sessions survive restarts, each such lobby goes
back to ``open`` (pushing ``lobby.updated``) and its joined phones get ``measurement.session_cancelled``
with reason ``service_restarted``, so nobody waits for a step that will never come.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from sqlalchemy import select

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.models import Lobby, LobbyState
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.measurement_events import SessionCancelled

logger = logging.getLogger("sonalyze.lobby.restart")

RESTART_REASON: Final = "service_restarted"


async def release_lost_sessions(state: Any) -> int:
    """Reopen every lobby left ``measurement_running`` and notify its phones; returns how many (best effort)."""
    async with state.sessionmaker() as session:
        query = select(Lobby.id).where(Lobby.state == LobbyState.MEASUREMENT_RUNNING, Lobby.closed_at.is_(None))
        lobby_ids = list((await session.execute(query)).scalars())
    for lobby_id in lobby_ids:
        try:
            await _release(state, lobby_id)
        except Exception:  # one lobby must not keep the others waiting
            logger.exception("could not reopen lobby %s after the restart", lobby_id)
    if lobby_ids:
        logger.warning("reopened %d lobbies whose measurement sessions were lost in a restart", len(lobby_ids))
    return len(lobby_ids)


async def _release(state: Any, lobby_id: Any) -> None:
    async with state.sessionmaker() as session:
        lobby = await service.get_lobby(session, lobby_id, for_update=True)
        coordinator = getattr(state, "coordinator", None)
        started_since = coordinator is not None and coordinator.holding(str(lobby_id)) is not None
        if lobby.state is not LobbyState.MEASUREMENT_RUNNING or started_since:
            await session.commit()
            return
        phones = [p.device_id for p in lobby.joined]
        ctx = LobbyContext(device_id=None, request_id=None, session=session, settings=state.settings,  # type: ignore[arg-type]
                           broadcaster=state.broadcaster, state=state)  # fmt: skip
        await service.set_state(ctx, lobby, LobbyState.OPEN)
    data: SessionCancelled = {
        "session_id": None,  # the session's id was in the lost memory too
        "lobby_id": str(lobby_id),
        "reason": RESTART_REASON,
        "cancelled_by": None,
        "message": "the lobby service restarted and lost the running measurement; start it again",
    }
    await state.broadcaster.push(phones, events.SESSION_CANCELLED, dict(data))


__all__ = ["RESTART_REASON", "release_lost_sessions"]
