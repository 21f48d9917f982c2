"""`LobbyContext`: what every lobby and measurement handler receives, from /gateway/handle and HTTP alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_protocol.envelope import RequestId

if TYPE_CHECKING:
    from sonalyze_lobby.broadcast import Broadcaster
    from sonalyze_lobby.settings import Settings


@dataclass(slots=True)
class LobbyContext:
    """The calling device, its request id, one database session for this use case, and the app's state.

    The session is opened and closed by the transport; the service commits at the end of each use case.
    """

    device_id: str
    request_id: RequestId
    session: AsyncSession
    settings: Settings
    broadcaster: Broadcaster
    state: Any  # app.state: settings, engine, sessionmaker, http client, broadcaster, coordinator
