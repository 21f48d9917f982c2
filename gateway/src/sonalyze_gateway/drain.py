"""Drain: a gateway told to stop (SIGTERM, SIGINT) hands its phones to the other gateways.

In order: it stops taking sockets (a new ``/ws`` is refused before the handshake completes with HTTP 503,
which a proxy passes on to another gateway, and ``/healthz`` answers 503 ``draining`` so a proxy's
health check takes it out), closes every open
socket with 1012 ("service restart": reconnect, to another gateway), lets the backplane forget its
devices, and only then hands over to uvicorn's own shutdown, which closes the listening socket and
exits. A second signal goes straight to uvicorn (force exit).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Final

from sonalyze_gateway.connection_manager import ConnectionManager

logger = logging.getLogger("sonalyze.gateway")

# RFC 6455 7.4.1 / IANA: "Service Restart": the server goes away, the client should reconnect
CLOSE_SERVICE_RESTART: Final = 1012
DRAIN_REASON: Final = "gateway draining: reconnect"


class DrainState:
    """Set once the gateway began to drain; read by ``/ws`` and ``/healthz``."""

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False


async def drain(state: DrainState, manager: ConnectionManager, settle: Callable[[], Awaitable[None]]) -> int:
    """Refuse new sockets, close the open ones with 1012, then ``settle`` (backplane bookkeeping)."""
    state.draining = True
    count = await manager.close_all(CLOSE_SERVICE_RESTART, DRAIN_REASON)
    try:
        await settle()
    except Exception as exc:  # the sockets are closed; bookkeeping that fails expires with the gateway
        logger.warning("drain: settling failed: %r", exc)
    logger.info("drained: closed %d sockets with %d", count, CLOSE_SERVICE_RESTART)
    return count


def drain_before_exit(
    state: DrainState, manager: ConnectionManager, settle: Callable[[], Awaitable[None]]
) -> Callable[[], None]:
    """Chain SIGINT/SIGTERM so the gateway drains before uvicorn's own shutdown.

    uvicorn would stop listening and close the sockets with 1012 itself, but only after the signal,
    without refusing the sockets that arrive meanwhile and without the backplane's bookkeeping.
    Returns a function that restores the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
    closing: list[asyncio.Task[None]] = []

    async def drain_then_exit(signum: int, frame: FrameType | None) -> None:
        try:
            await drain(state, manager, settle)
        finally:
            previous[signum](signum, frame)

    def handler(signum: int, frame: FrameType | None) -> None:
        if closing:  # a second signal: straight to uvicorn (force exit)
            previous[signum](signum, frame)
            return
        closing.append(None)  # type: ignore[arg-type]
        loop.call_soon_threadsafe(lambda: closing.append(loop.create_task(drain_then_exit(signum, frame))))

    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if callable(current):
            previous[sig] = current
            signal.signal(sig, handler)

    def restore() -> None:
        for sig, original in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, original)

    return restore
