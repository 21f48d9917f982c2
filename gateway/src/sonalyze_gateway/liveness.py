"""A WebSocket ping answered within a deadline, or not: is the peer of an old socket still there?

ASGI has no ping, so the prober reaches the server's protocol object behind ``receive``. uvicorn's
``websockets-sansio`` protocol (the one the gateway runs with) and its legacy ``websockets`` one are
supported. Where neither is found (another server, the test client) the answer is None: unknown,
which callers treat as alive, so an unknown never hands a device id to someone else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("sonalyze.gateway.liveness")

# answers True (pong in time), False (no pong, or the socket is already closing), None (cannot tell)
Prober = Callable[[float], Awaitable[bool | None]]


def prober_for(receive: Any) -> Prober:
    """The prober of the socket whose ASGI ``receive`` this is."""
    protocol = getattr(receive, "__self__", None)
    conn = getattr(protocol, "conn", None)
    if (
        protocol is not None
        and hasattr(conn, "send_ping")
        and hasattr(conn, "data_to_send")
        and hasattr(protocol, "handle_pong")
        and hasattr(protocol, "transport")
    ):
        return _SansIOProber(protocol)
    if protocol is not None and asyncio.iscoroutinefunction(getattr(protocol, "ping", None)):
        return _LegacyProber(protocol)
    return _unknown


async def _unknown(timeout_s: float) -> bool | None:
    return None


class _SansIOProber:
    """uvicorn's ``WebSocketsSansIOProtocol``: send our own ping, catch its pong before uvicorn does."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    async def __call__(self, timeout_s: float) -> bool | None:
        protocol = self._protocol
        if protocol.close_sent or protocol.transport is None or protocol.transport.is_closing():
            return False
        payload = b"sonalyze" + os.urandom(4)
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        uvicorn_handle_pong = protocol.handle_pong

        def handle_pong(event: Any) -> None:
            if bytes(event.data) == payload:
                if not answered.done():
                    answered.set_result(True)
                return
            uvicorn_handle_pong(event)  # uvicorn's own keep-alive pongs

        protocol.handle_pong = handle_pong
        try:
            protocol.conn.send_ping(payload)
            protocol.transport.write(b"".join(protocol.conn.data_to_send()))
            return await asyncio.wait_for(answered, timeout_s)
        except TimeoutError:
            return False
        except Exception as exc:  # the transport broke under us: that peer is gone
            logger.debug("liveness ping failed: %r", exc)
            return False
        finally:
            if protocol.__dict__.get("handle_pong") is handle_pong:
                del protocol.handle_pong


class _LegacyProber:
    """uvicorn's ``websockets`` (legacy) protocol has ``ping()`` returning the pong waiter."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    async def __call__(self, timeout_s: float) -> bool | None:
        try:
            waiter = await asyncio.wait_for(self._protocol.ping(), timeout_s)
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return False
        except Exception as exc:
            logger.debug("liveness ping failed: %r", exc)
            return False
        return True
