"""A lean keep-alive HTTP/1.1 client for the gateway's one hot call: small JSON posts to a service.

Forwarding thousands of events a second is most of the gateway's work. aiohttp spends 55-90 us of
CPU per post here, httpx 0.5-2 ms; this client, an `asyncio.Protocol` with httptools' parser and a
pool of idle connections, spends a fraction of that (bench/gateway_clients.py) and leaves no
reference cycles behind, so it also adds no work for the garbage collector. It does only what the
gateway needs: ``POST`` with a body in memory, the status and the whole (small) body back.

Idle connections are dropped after `IDLE_KEEPALIVE_S`, before uvicorn's 5 s keep-alive would close
them from its side, so a request is never written into a connection the server is closing; so is a
connection that brought a 5xx (a service failing on an unhandled error closes it a moment after
answering, and the next event sent on it would fail in its place). Events are never sent twice: a
``POST`` may have been acted on before its connection broke.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Final
from urllib.parse import urlsplit

import httptools

IDLE_KEEPALIVE_S: Final = 2.0
MAX_CONNECTIONS_PER_SERVICE: Final = 256
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024


class ConnectionFailed(Exception):
    """No connection, or it broke before the whole response arrived."""


class ConnectFailed(ConnectionFailed):
    """No connection could be made: nothing was sent (another replica may take the request)."""


class ResponseTimeout(Exception):
    """No complete response within the timeout."""


class _Http1Connection(asyncio.Protocol):
    """One connection, one request at a time."""

    __slots__ = (
        "_body",
        "_keep_alive",
        "_parser",
        "_pool",
        "_size",
        "_status",
        "_timer",
        "_waiter",
        "closed",
        "idle_since_s",
        "transport",
    )

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._body: list[bytes] = []
        self._size = 0
        self._keep_alive = False
        self._timer: asyncio.TimerHandle | None = None
        self.idle_since_s = 0.0
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionFailed(f"connection closed ({exc!r})" if exc else "connection closed by the service"))
        self._pool._forget(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"malformed response: {exc}"))
            self.close()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(ConnectionFailed(f"response larger than {MAX_RESPONSE_BYTES} bytes"))
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        self._cancel_timer()
        status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        body = b"".join(self._body)
        self._body = []
        self._size = 0
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    # used by the pool
    def send(self, request: bytes, timeout_s: float) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._keep_alive = False
        self._timer = loop.call_later(timeout_s, self._on_timeout)
        self.transport.write(request)
        return waiter

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed and self._waiter is None

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _on_timeout(self) -> None:
        self._timer = None
        self._fail(ResponseTimeout())
        self.close()  # a late response must not be read as the answer to the next request

    def _fail(self, exc: Exception) -> None:
        self._cancel_timer()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Http1Pool:
    """Keep-alive connections to one ``http://host:port`` service."""

    def __init__(self, base_url: str, max_connections: int = MAX_CONNECTIONS_PER_SERVICE) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port] service URLs are supported, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode("ascii")
        self.base_path = parts.path.rstrip("/")
        self._idle: deque[_Http1Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[_Http1Connection] = set()

    def request_head(self, path: str, headers: list[tuple[str, str]], content_length: int) -> bytes:
        """The request line and headers of a ``POST`` (header values must be printable ASCII)."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self.host_header.decode()}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {content_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    async def post(self, request: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Send one complete request (head + body); returns ``(status, body)``.

        Raises `ResponseTimeout` when connecting and answering take longer than ``timeout_s`` and
        `ConnectionFailed` when there is no connection or it breaks.
        """
        deadline = time.monotonic() + timeout_s
        async with self._slots:
            connection = self._take_idle() or await self._connect(timeout_s)
            remaining_s = max(0.001, deadline - time.monotonic())
            try:
                status, body = await connection.send(request, remaining_s)
            except BaseException:
                connection.close()  # cancelled or failed mid-request: its state is unknown
                raise
            self._give_back(connection, status)
            return status, body

    def _take_idle(self) -> _Http1Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since_s < IDLE_KEEPALIVE_S:
                return connection
            connection.close()
        return None

    async def _connect(self, timeout_s: float) -> _Http1Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Http1Connection(self), self.host, self.port), timeout_s
            )
        except TimeoutError:
            raise ResponseTimeout() from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._open.add(connection)
        return connection

    def _give_back(self, connection: _Http1Connection, status: int) -> None:
        if connection.reusable and status < 500:
            connection.idle_since_s = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def _forget(self, connection: _Http1Connection) -> None:
        self._open.discard(connection)

    def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
