"""App factory of the lobby service: HTTP endpoints, ``/gateway/handle`` and the resources they share."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sonalyze_db import database_status, install_outage_handlers, make_engine, make_read_engine, make_sessionmaker
from sonalyze_lobby import migrations
from sonalyze_lobby.broadcast import Broadcaster
from sonalyze_lobby.gateway_handler import HANDLERS, lobby_context
from sonalyze_lobby.restart import release_lost_sessions
from sonalyze_lobby.routes import router as lobby_router
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.broadcast import BroadcastClient
from sonalyze_protocol.handlers import gateway_handle_router
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging
from sonalyze_protocol.storage_client import StorageRecorder, outbox_health

logger = logging.getLogger("sonalyze.lobby")

SESSION_RUNNER_MODULE = "sonalyze_lobby.session_runner"


def _make_coordinator(state: Any) -> Any | None:
    """The measurement protocol's coordinator, when its module offers ``create_coordinator(app_state)``."""
    if importlib.util.find_spec(SESSION_RUNNER_MODULE) is None:
        return None
    session_runner = importlib.import_module(SESSION_RUNNER_MODULE)
    if not hasattr(session_runner, "create_coordinator"):
        return None
    return session_runner.create_coordinator(state)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("lobby", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        engine = make_engine(settings.database_url, settings.database_pool)
        state.engine = engine
        state.sessionmaker = make_sessionmaker(engine)
        # reads only: on SQLite they never wait behind a writer (see sonalyze_db.engine)
        state.read_engine = make_read_engine(settings.database_url, engine, settings.database_pool)
        state.read_sessionmaker = make_sessionmaker(state.read_engine)
        state.http = httpx.AsyncClient(timeout=settings.http_timeout_seconds)
        state.broadcaster = Broadcaster(
            BroadcastClient(
                settings.gateway_url,
                settings.internal_auth_token,
                state.http,
                timeout_s=settings.broadcast_timeout_seconds,
            )
        )
        state.coordinator = None
        state.recorder = await StorageRecorder.from_settings("lobby", settings)
        release: asyncio.Task[int] | None = None
        try:
            if settings.run_migrations:
                await migrations.upgrade(engine)
                logger.info("database migrated to head")
            state.coordinator = _make_coordinator(state)
            # sessions lived in the old process's memory: their lobbies reopen and their phones are told
            release = asyncio.get_running_loop().create_task(release_lost_sessions(state))
            yield
        finally:
            if release is not None:
                release.cancel()
            if state.coordinator is not None:
                await state.coordinator.aclose()
            if state.recorder is not None:
                await state.recorder.aclose()
            await state.http.aclose()
            if state.read_engine is not engine:
                await state.read_engine.dispose()
            await engine.dispose()

    app = FastAPI(title="Sonalyze lobby", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    install_outage_handlers(app)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(lobby_router)
    app.include_router(gateway_handle_router(HANDLERS, lobby_context))

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and database connectivity; 503 while the database is unreachable."""
        database = await database_status(app.state.read_engine)  # never queued behind writers
        status = "ok" if database == "ok" else "degraded"
        outbox = await outbox_health(getattr(app.state, "recorder", None))
        body = {"status": status, "service": "lobby", "database": database, "outbox": outbox}
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app
