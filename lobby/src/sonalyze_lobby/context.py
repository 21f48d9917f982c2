"""`LobbyApp`, what the lobby's lifespan builds, and `LobbyContext`, what every use case receives.

Both transports (``/gateway/handle`` and the HTTP routes), the coordinator's lobby changes and the
restart notices get their context from `LobbyApp.context`: one session, the settings and the shared parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sonalyze_protocol.envelope import RequestId

if TYPE_CHECKING:
    import httpx

    from sonalyze_db import Database, RowReader
    from sonalyze_lobby.broadcast import Broadcaster
    from sonalyze_lobby.history import StorageRelay
    from sonalyze_lobby.session_runner import Coordinator
    from sonalyze_lobby.settings import Settings
    from sonalyze_protocol.storage_client import StorageRecorder


@dataclass(slots=True)
class LobbyContext:
    """The calling device, its request id, one database session for this use case, and what it may use.

    The session is opened on first use (``session_source``: a session, or the sessionmaker to open one
    with) and closed by the transport; the service commits at the end of each use case. A use case that
    reads through ``rows`` (`lobby_reads`) never opens one: creating it cost ~40 us of CPU per event.
    ``history`` (the storage outbox relay; None: recording off) and ``coordinator`` are absent in unit
    tests of the service alone.
    """

    device_id: str
    request_id: RequestId
    session_source: AsyncSession | async_sessionmaker[AsyncSession]
    rows: RowReader  # hot reads of one statement without the session (`lobby_reads`)
    settings: Settings
    broadcaster: Broadcaster
    history: StorageRelay | None = None
    coordinator: Coordinator | None = None
    opened_session: AsyncSession | None = field(default=None, init=False, repr=False)

    @property
    def session(self) -> AsyncSession:
        """This use case's session, opened on first use."""
        if self.opened_session is None:
            source = self.session_source
            self.opened_session = source if isinstance(source, AsyncSession) else source()
        return self.opened_session


@dataclass(slots=True)
class LobbyApp:
    """Everything the lobby's routes and handlers share; built in the lifespan, kept as ``app.state.lobby``."""

    settings: Settings
    database: Database
    http: httpx.AsyncClient
    broadcaster: Broadcaster
    recorder: StorageRecorder | None
    history: StorageRelay | None = None  # moves the storage_outbox rows into ``recorder``'s outbox
    coordinator: Coordinator = field(init=False)  # it changes lobbies through `context`: set right after

    @asynccontextmanager
    async def context(
        self, device_id: str, request_id: RequestId, *, read_only: bool = False
    ) -> AsyncIterator[LobbyContext]:
        """One use case's context; ``read_only`` sessions come from the read engine (SQLite: never behind a writer).

        The session is opened on first use and closed only if a transaction is still open: one whose use
        case committed holds no connection, and closing it anyway cost ~40 us (a greenlet and a task).
        """
        context = LobbyContext(
            device_id=device_id,
            request_id=request_id,
            session_source=self.database.read_sessionmaker if read_only else self.database.sessionmaker,
            rows=self.database.rows,
            settings=self.settings,
            broadcaster=self.broadcaster,
            history=self.history,
            coordinator=self.coordinator,
        )
        try:
            yield context
        finally:
            session = context.opened_session
            if session is not None and session.in_transaction():
                await session.close()


def lobby_app(request: Request) -> LobbyApp:
    """The `LobbyApp` of the app serving ``request``."""
    app: LobbyApp = request.app.state.lobby
    return app
