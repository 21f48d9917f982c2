"""App factory of the lobby service: HTTP endpoints, ``/gateway/handle`` and the resources they share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sonalyze_db import Database, database_status, install_outage_handlers
from sonalyze_lobby import migrations
from sonalyze_lobby.broadcast import Broadcaster
from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.gateway_handler import HANDLERS, lobby_context
from sonalyze_lobby.history import StorageRelay
from sonalyze_lobby.measurement_client import MeasurementClient
from sonalyze_lobby.replicas import Relay
from sonalyze_lobby.replicas import router as replicas_router
from sonalyze_lobby.restart import keep_leases
from sonalyze_lobby.routes import router as lobby_router
from sonalyze_lobby.session_runner import Coordinator, ServiceLobbyStates
from sonalyze_lobby.session_store import DatabaseStore, Replica
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.broadcast import BroadcastClient
from sonalyze_protocol.handlers import install_gateway_handle
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging
from sonalyze_protocol.storage_client import StorageRecorder, outbox_health
from sonalyze_protocol.telemetry import TELEMETRY_OFF

logger = logging.getLogger("sonalyze.lobby")


def make_coordinator(lobby: LobbyApp, store: DatabaseStore | None = None) -> Coordinator:
    """The measurement protocol's coordinator: pushes through the lobby's broadcaster, lobby changes through
    its service layer, each transition stored in ``store``; closed with ``await coordinator.aclose()``."""
    settings = lobby.settings
    client = MeasurementClient(
        settings.measurement_url,
        lobby.http,
        token=settings.internal_auth_token,
        timeout_s=settings.http_timeout_seconds,
    )
    return Coordinator(
        settings=settings,
        pusher=lambda: lobby.broadcaster,
        measurement=client,
        lobby_states=ServiceLobbyStates(lobby),
        store=store,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("lobby", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.open(settings.database_url, settings.database_pool)
        http = httpx.AsyncClient(timeout=settings.http_timeout_seconds)
        broadcast = BroadcastClient(
            settings.gateway_url, settings.internal_auth_token, http, timeout_s=settings.broadcast_timeout_seconds
        )
        recorder = await StorageRecorder.from_settings("lobby", settings)
        history = StorageRelay(database, recorder) if recorder is not None else None
        lobby = LobbyApp(settings, database, http, Broadcaster(broadcast), recorder, history)
        store = DatabaseStore(lobby, Replica(settings.replica_id, settings.replica_url, settings.session_lease_s))
        lobby.coordinator = make_coordinator(lobby, store)
        if settings.replica_url:  # one of several replicas: the others hear of connection changes
            lobby.coordinator.relay = Relay(lobby, store)
        app.state.lobby = lobby
        leases: asyncio.Task[None] | None = None
        try:
            if settings.run_migrations:
                await migrations.upgrade(database.engine)
                logger.info("database migrated to head")
            lobby.coordinator.warm_up()
            if history is not None:  # after the migrations: it reads the storage_outbox table
                history.start()
            # stored sessions resume (this replica's from before a restart, others' whose lease expired)
            leases = asyncio.get_running_loop().create_task(keep_leases(lobby, store))
            yield
        finally:
            if leases is not None:
                leases.cancel()
            await lobby.coordinator.aclose()
            if history is not None:
                await history.aclose()
            if recorder is not None:
                await recorder.aclose()
            await http.aclose()
            await lobby.database.dispose()

    app = FastAPI(telemetry=TELEMETRY_OFF, title="Sonalyze lobby", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    install_outage_handlers(app)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(lobby_router)
    app.include_router(replicas_router)
    install_gateway_handle(app, settings, HANDLERS, lobby_context)  # after the last add_middleware

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and database connectivity; 503 while the database is unreachable."""
        lobby: LobbyApp = app.state.lobby
        database = await database_status(lobby.database.read_engine)  # never queued behind writers
        status = "ok" if database == "ok" else "degraded"
        outbox = await outbox_health(lobby.recorder)
        if outbox is not None and lobby.history is not None and database == "ok":
            with contextlib.suppress(Exception):  # committed rows not yet moved into the outbox count as pending
                outbox["pending"] += await lobby.history.waiting()
        body = {"status": status, "service": "lobby", "database": database, "outbox": outbox}
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app
