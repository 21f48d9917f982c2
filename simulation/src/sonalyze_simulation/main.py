"""App factory of the simulation service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from sonalyze_protocol.disconnect import stopped_when_caller_leaves
from sonalyze_protocol.handlers import install_gateway_handle
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, configure_logging
from sonalyze_protocol.storage_client import StorageRecorder, outbox_health
from sonalyze_protocol.telemetry import TELEMETRY_OFF
from sonalyze_simulation.gateway_handler import HANDLERS
from sonalyze_simulation.routes import router
from sonalyze_simulation.service import SimulationService
from sonalyze_simulation.settings import Settings

logger = logging.getLogger("sonalyze.simulation")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("simulation", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = SimulationService.from_settings(settings)
        if settings.simulation_warm_workers:
            service.pool.warm_up()
        service.recorder = await StorageRecorder.from_settings("simulation", settings)
        app.state.service = service
        logger.info(
            "simulation pool: %d workers, queue wait %.1f s, cost budget %.1f s",
            settings.simulation_pool_size,
            settings.simulation_queue_wait_s,
            settings.simulation_cost_budget_s,
        )
        try:
            yield
        finally:
            service.pool.shutdown()
            if service.recorder is not None:
                await service.recorder.aclose()

    app = FastAPI(telemetry=TELEMETRY_OFF, title="Sonalyze simulation", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(router)
    install_gateway_handle(app, settings, HANDLERS, stopped_when_caller_leaves())  # after the last add_middleware

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        """Liveness, and how busy the simulation workers are."""
        service: SimulationService | None = getattr(app.state, "service", None)
        workers = (
            {"size": service.pool.size, "running": service.pool.running, "waiting": service.pool.waiting}
            if service
            else None
        )
        outbox = await outbox_health(service.recorder if service else None)
        return {"status": "ok", "service": "simulation", "workers": workers, "outbox": outbox}

    return app
