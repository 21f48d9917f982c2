"""Logging: one line per request or event, each carrying ``request_id`` and ``device_id``.

The ids live in context variables, so every line logged while serving a request carries them,
whichever module logs it; that is how one measurement is followed across services.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
import weakref
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


class ContextFormatter(logging.Formatter):
    """`LOG_FORMAT`, its timestamp text built once per second rather than once per line."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"


class TurnBufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines logged during one turn of the event loop in one write.

    A service logs a line per event; written one by one, each is a system call (and a wake-up of whatever
    reads the pipe), at ~1000 events/s a noticeable share of the CPU. Lines logged in the loop's thread
    wait for the end of the loop's current turn; lines from other threads (and with no loop running) are
    written at once, after what is waiting, so the order is kept. At most one turn's lines are lost
    if the process is killed outright; an orderly exit flushes them (`logging.shutdown`).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on
        self._loop_thread = 0  # and its thread
        _TURN_BUFFERED.add(self)

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
            if self._loop is not None and threading.get_ident() == self._loop_thread and self._loop.is_running():
                self._pending.append(line)  # a flush is due at the end of this turn
                return
            try:  # (asyncio's get_running_loop costs a getpid system call: once per turn, not per line)
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            self._write_pending()  # what waits for another loop's turn goes first
            self._pending.append(line)
            if loop is None:
                self._write_pending()
                return
            self._loop, self._loop_thread = loop, threading.get_ident()
            loop.call_soon(self._flush_turn, loop)
        except Exception:
            self.handleError(record)

    def _flush_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._loop is loop:
                self._loop = None
            self._write_pending()

    def _write_pending(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None:
                self._write_pending()


_TURN_BUFFERED: weakref.WeakSet[TurnBufferedHandler] = weakref.WeakSet()


def _forget_in_child() -> None:
    """A forked child does not write its parent's waiting lines a second time."""
    for handler in list(_TURN_BUFFERED):
        handler._pending, handler._loop = [], None


os.register_at_fork(after_in_child=_forget_in_child)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to one stderr handler with the context format."""
    handler = TurnBufferedHandler(sys.stderr)
    handler.setFormatter(ContextFormatter())
    # what `LOG_FORMAT` never prints is not gathered for every record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a walk up the stack), thread and process (a getpid system call)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
