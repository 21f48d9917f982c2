"""App factory of the storage service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sonalyze_db import Database, database_status
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging
from sonalyze_protocol.telemetry import TELEMETRY_OFF
from sonalyze_storage import migrations
from sonalyze_storage.routes import ROUTERS, install_database_error_handlers
from sonalyze_storage.settings import Settings

logger = logging.getLogger("sonalyze.storage")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("storage", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the long-term record: on SQLite every commit is synced (synchronous=FULL), so nothing the
        # outboxes were told is stored can be lost to a power cut
        database = Database.open(settings.database_url, settings.database_pool, synchronous="FULL")
        app.state.database = database
        try:
            if settings.run_migrations:
                await migrations.upgrade(database.engine)
                logger.info("database schema is at the latest migration")
            yield
        finally:
            await database.dispose()

    app = FastAPI(
        telemetry=TELEMETRY_OFF,
        title="Sonalyze storage",
        version="1.0.0",
        description="Long-term record of devices, lobbies, measurements, analyses and simulations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    install_database_error_handlers(app)
    app.add_middleware(RequestLogMiddleware)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and database connectivity; 503 while the database is unreachable."""
        database = await database_status(app.state.database.read_engine)
        status = "ok" if database == "ok" else "degraded"
        body = {"status": status, "service": "storage", "database": database}
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app
