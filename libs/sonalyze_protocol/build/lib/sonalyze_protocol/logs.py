"""Logging: one line per request or event, each carrying ``request_id`` and ``device_id``.

The ids live in context variables, so every line logged while serving a request carries them,
whichever module logs it; that is how one measurement is followed across services.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

REQUEST_ID_HEADER: Final = "x-request-id"
DEVICE_ID_HEADER: Final = "x-device-id"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
device_id_var: ContextVar[str | None] = ContextVar("device_id", default=None)

LOG_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(service)s %(name)s request_id=%(request_id)s device_id=%(device_id)s %(message)s"
)


class ContextFilter(logging.Filter):
    """Stamps each record with the service name and the current request and device ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id_var.get() or "-"
        record.device_id = device_id_var.get() or "-"
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to one stderr handler with the context format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(level.upper())  # uvicorn pins its own loggers to its --log-level
    # our middleware writes the access line, with the ids; uvicorn's own would be a second one
    logging.getLogger("uvicorn.access").disabled = True


@contextmanager
def bind_context(*, request_id: Any = None, device_id: str | None = None) -> Iterator[None]:
    """Set the ids for the lines logged inside the block."""
    tokens = []
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(str(request_id))))
    if device_id is not None:
        tokens.append((device_id_var, device_id_var.set(device_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class RequestLogMiddleware:
    """Pure ASGI middleware: binds ids from ``X-Request-Id``/``X-Device-Id`` and logs one line per HTTP request.

    Pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched.
    """

    def __init__(self, app: Any, *, quiet_paths: frozenset[str] = frozenset({"/health", "/healthz"})) -> None:
        self.app = app
        self.quiet_paths = quiet_paths
        self.logger = logging.getLogger("sonalyze.http")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1") or uuid.uuid4().hex[:12]
        device_id = headers.get(DEVICE_ID_HEADER.encode(), b"").decode("latin-1") or None
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        started = time.perf_counter()
        with bind_context(request_id=request_id, device_id=device_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                level = logging.DEBUG if scope.get("path") in self.quiet_paths else logging.INFO
                self.logger.log(
                    level,
                    "%s %s %d %.1fms",
                    scope.get("method"),
                    scope.get("path"),
                    status["code"],
                    (time.perf_counter() - started) * 1000,
                )
