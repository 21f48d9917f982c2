"""The internal listener: ``/internal/*`` on its own host and port, never on the public one.

Services push events through ``POST /internal/broadcast``; an operator revokes a device's credentials
with ``POST /internal/devices/{device_id}/revoke``. Both need ``X-Internal-Token``. The listener is a
second uvicorn server in the gateway's own event loop, started and stopped by the gateway's lifespan,
so it shares the connection manager without any hop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from sonalyze_gateway.schemas import BroadcastBody, BroadcastResult, DeviceId, Health, RevokeResult
from sonalyze_gateway.settings import Settings
from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER, tokens_match
from sonalyze_protocol.envelope import dumps, event_frame
from sonalyze_protocol.errors import Unauthorized
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware
from sonalyze_protocol.telemetry import TELEMETRY_OFF

if TYPE_CHECKING:
    from sonalyze_gateway.main import Gateway

logger = logging.getLogger("sonalyze.gateway")


def create_internal_app(gateway: Callable[[], Gateway], settings: Settings) -> FastAPI:
    """The internal API; ``gateway`` returns the running gateway's shared state."""
    app = FastAPI(
        telemetry=TELEMETRY_OFF, title="Sonalyze gateway (internal)", docs_url=None, redoc_url=None, openapi_url=None
    )
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    app.add_middleware(RequestLogMiddleware, quiet_paths=frozenset({"/internal/healthz"}))

    def require_token(request: Request) -> Gateway:
        running = gateway()
        if not tokens_match(running.settings.internal_auth_token, request.headers.get(INTERNAL_TOKEN_HEADER)):
            raise Unauthorized(f"missing or wrong {INTERNAL_TOKEN_HEADER} header")
        return running

    @app.get("/internal/healthz", response_model=Health)
    async def healthz() -> Health:
        """The internal listener answers (no token needed, nothing revealed but counts)."""
        manager = gateway().manager
        return Health(connections=manager.n_connections, devices=manager.n_devices)

    @app.post(
        "/internal/broadcast",
        response_model=BroadcastResult,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BroadcastBody.model_json_schema()}},
            }
        },
    )
    async def broadcast(request: Request) -> Response:
        """Push one event to every connection of the given devices (needs ``X-Internal-Token``)."""
        running = require_token(request)
        try:
            body = BroadcastBody.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
        frame = dumps(event_frame(body.event, body.data))  # serialised once for every receiver
        if running.backplane is not None:  # devices on any gateway of the backplane
            delivered, offline = await running.backplane.broadcast(body.device_ids, frame)
        else:
            delivered, offline = await running.manager.broadcast(body.device_ids, frame)
        logger.info("broadcast event=%s delivered=%d offline=%d", body.event, len(delivered), len(offline))
        return Response(orjson.dumps({"delivered": delivered, "offline": offline}), media_type="application/json")

    @app.post("/internal/devices/{device_id}/revoke", response_model=RevokeResult)
    async def revoke(device_id: DeviceId, request: Request) -> RevokeResult:
        """Void a device's credentials (a lost or stolen phone): its sockets close and the id may be claimed again."""
        running = require_token(request)
        revoked = await running.identity.revoke(device_id)
        logger.info("device %s revoked=%s", device_id, revoked)
        return RevokeResult(device_id=device_id, revoked=revoked)

    return app


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside another's event loop: the outer server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class InternalListener:
    """Binds ``host:port`` at once (a taken port fails the gateway's startup) and serves ``app`` there."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise RuntimeError(
                f"internal listener cannot bind {host}:{port} (INTERNAL_HOST/INTERNAL_PORT): {exc}"
            ) from exc
        self._socket.listen(128)
        self._socket.setblocking(False)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        self._server = _EmbeddedServer(config)

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._socket])

    def stop(self) -> None:
        self._server.should_exit = True
