"""App factory of the measurement service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from sonalyze_measurement.analysis_pool import AnalysisPool
from sonalyze_measurement.gateway_handler import ANALYSIS_EVENTS, HANDLERS
from sonalyze_measurement.reference_store import ReferenceStore
from sonalyze_measurement.routes import router
from sonalyze_measurement.service import Services
from sonalyze_measurement.sessions import SessionStore
from sonalyze_measurement.settings import Settings
from sonalyze_measurement.storage import JobStore
from sonalyze_protocol.disconnect import stopped_when_caller_leaves
from sonalyze_protocol.handlers import install_gateway_handle
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging
from sonalyze_protocol.storage_client import StorageRecorder, outbox_health
from sonalyze_protocol.telemetry import TELEMETRY_OFF


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("measurement", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        data_dir = settings.measurement_data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        pool = AnalysisPool(settings.measurement_analysis_workers, settings.measurement_analysis_timeout_s)
        pool.start()
        recorder = await StorageRecorder.from_settings("measurement", settings)
        app.state.services = Services(
            settings=settings,
            jobs=JobStore(data_dir),
            references=ReferenceStore(data_dir),
            pool=pool,
            sessions=SessionStore(data_dir),
            recorder=recorder,
        )
        try:
            yield
        finally:
            pool.shutdown()
            if recorder is not None:
                await recorder.aclose()

    app = FastAPI(telemetry=TELEMETRY_OFF, title="Sonalyze measurement", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(router)
    install_gateway_handle(
        app, settings, HANDLERS, stopped_when_caller_leaves(ANALYSIS_EVENTS)
    )  # after the last add_middleware

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        """Liveness, and the records waiting for storage (``outbox``: pending, dead)."""
        services = getattr(app.state, "services", None)
        outbox = await outbox_health(services.recorder if services is not None else None)
        return {"status": "ok", "service": "measurement", "outbox": outbox}

    return app
