"""App factory of the lobby service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging

from sonalyze_lobby.db import database_status, make_engine, make_sessionmaker
from sonalyze_lobby.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("lobby", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Sonalyze lobby", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestLogMiddleware)

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and database connectivity; 503 while the database is unreachable."""
        database = await database_status(app.state.engine)
        status = "ok" if database == "ok" else "degraded"
        body = {"status": status, "service": "lobby", "database": database}
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app
