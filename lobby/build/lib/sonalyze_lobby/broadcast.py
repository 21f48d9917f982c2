"""`Broadcaster`: the lobby's pushes to devices through the gateway, always best effort."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from sonalyze_lobby.models import Lobby
from sonalyze_lobby.schemas import LobbyView
from sonalyze_protocol.broadcast import BroadcastClient, BroadcastResult

LOBBY_UPDATED: Final = "lobby.updated"
LOBBY_ROOM_SNAPSHOT: Final = "lobby.room_snapshot"
LOBBY_STEP_UPDATE: Final = "lobby.step_update"
LOBBY_PROFILE_UPDATE: Final = "lobby.profile_update"

logger = logging.getLogger("sonalyze.lobby.broadcast")


class Broadcaster:
    """Wraps `BroadcastClient`; a push that fails is logged and returns ``None``, never raises."""

    def __init__(self, client: BroadcastClient) -> None:
        self._client = client

    async def push(self, device_ids: Iterable[str], event: str, data: dict[str, Any]) -> BroadcastResult | None:
        try:
            return await self._client.push(device_ids, event, data)
        except Exception:  # a bug in a push must not undo a committed change either
            logger.exception("push of %s failed unexpectedly", event)
            return None

    async def lobby_updated(
        self, lobby: Lobby, change: str, device_id: str | None, recipients: Iterable[str] | None = None
    ) -> BroadcastResult | None:
        """``lobby.updated`` with the full view to ``recipients`` (default: every joined participant)."""
        data = {
            "type": change,
            "lobby_id": str(lobby.id),
            "device_id": device_id,
            "lobby": LobbyView.of(lobby).model_dump(mode="json"),
        }
        targets = [p.device_id for p in lobby.joined] if recipients is None else list(recipients)
        return await self.push(targets, LOBBY_UPDATED, data)
