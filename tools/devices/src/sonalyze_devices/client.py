"""`DeviceClient`: one virtual phone's WebSocket connection to the gateway.

Requests are matched to their response by ``request_id``; pushes go to a queue the device's
behaviour reads. The client can drop and re-open its connection (to simulate a flaky network)
without losing its identity. With ``reconnect``, a connection the gateway closes or loses is opened
again at once, at the next of ``fallback_urls`` (the other gateways: a drained gateway closes with
1012, a killed one just goes), and a request that the loss interrupted is sent again there once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection

logger = logging.getLogger("sonalyze.devices")

PushHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
# a check of an answer's or a push's data (the app dialect's hard casts); raises to refuse it
Check = Callable[[str, Any], None]
# the gateway's own notices about the connection; kept apart from the lobby's and measurement's pushes
GATEWAY_NOTICES = frozenset({"gateway.identified", "gateway.identify_required"})


class ErrorReply(Exception):
    """An error frame answered a request."""

    def __init__(self, event: str, code: str, message: str, error: dict[str, Any]) -> None:
        super().__init__(f"{event}: {code}: {message}")
        self.event = event
        self.code = code
        self.message = message
        self.error = error


class Push(NamedTuple):
    """One ``event`` frame: unpacks as ``event, data``."""

    event: str
    data: dict[str, Any]


class DeviceClient:
    """A WebSocket client identified by ``device_id`` (sent as ``?device_id=``).

    The credential the gateway hands out (``gateway.identified``) is kept and, with ``use_credential``,
    presented on every reconnect as ``?device_token=`` (the phone app itself knows none).
    """

    def __init__(
        self,
        ws_url: str,
        device_id: str,
        *,
        request_timeout_s: float = 30.0,
        latencies_s: list[float] | None = None,
        check_response: Check | None = None,
        check_push: Check | None = None,
        request_ids: Callable[[], str] | None = None,
        use_credential: bool = True,
        fallback_urls: Sequence[str] = (),
        reconnect: bool = False,
        reconnect_window_s: float = 30.0,
    ) -> None:
        self.ws_url = ws_url
        self.urls = [ws_url, *(u for u in fallback_urls if u != ws_url)]
        self.reconnect = reconnect
        self.reconnect_window_s = reconnect_window_s
        # every loss the client recovered from: (close code or None, the URL it came back on, seconds it took)
        self.reconnects: list[tuple[int | None, str, float]] = []
        self._online = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None
        self.device_id = device_id
        self.request_timeout_s = request_timeout_s
        self.latencies_s = latencies_s  # request -> response times, when a caller collects them
        self.pushes: asyncio.Queue[Push] = asyncio.Queue()
        self.seen: list[Push] = []  # every push, in arrival order (the queue is consumed, this is kept)
        self.answers: list[tuple[str, Any]] = []  # every successful answer: (event, data)
        # pushes a check refused: they never reach the queue, as the app's handler would have thrown
        self.violations: list[str] = []
        self._check_response = check_response
        self._check_push = check_push
        self._request_ids = request_ids
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.use_credential = use_credential
        self.device_token: str | None = None
        self.identified: asyncio.Event = asyncio.Event()  # set by each gateway.identified

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def connect(self) -> None:
        sep = "&" if "?" in self.ws_url else "?"
        query = f"device_id={quote(self.device_id, safe='')}"
        if self.use_credential and self.device_token:
            query += f"&device_token={quote(self.device_token, safe='')}"
        self.identified.clear()
        self._connection = await websockets.connect(f"{self.ws_url}{sep}{query}", max_size=2**22, open_timeout=10)
        self._reader = asyncio.create_task(self._read(self._connection), name=f"ws-{self.device_id}")
        self._online.set()

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for raw in connection:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "event" and frame.get("event") in GATEWAY_NOTICES:
                    self._on_gateway_notice(frame["event"], frame.get("data") or {})
                elif kind == "event":
                    push = Push(frame["event"], frame.get("data") or {})
                    self.seen.append(push)
                    if self._check_push is not None:
                        try:
                            self._check_push(push.event, frame.get("data"))
                        except Exception as exc:
                            logger.error("%s: refused push: %s", self.device_id, exc)
                            self.violations.append(str(exc))
                            continue
                    await self.pushes.put(push)
                elif kind in ("response", "error"):
                    future = self._pending.pop(str(frame.get("request_id")), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.device_id}: connection closed"))
            self._pending.clear()
            if self.reconnect and self._connection is connection:  # lost, not closed by us
                self._connection = None
                self._online.clear()
                code = connection.close_code
                self._reconnecting = asyncio.create_task(self._come_back(code), name=f"back-{self.device_id}")

    async def _come_back(self, close_code: int | None) -> None:
        """Open the connection again, at the next URL first (another gateway), until one takes it."""
        loop = asyncio.get_running_loop()
        started_s = loop.time()
        index = self.urls.index(self.ws_url) if self.ws_url in self.urls else 0
        attempt = 0
        while loop.time() - started_s < self.reconnect_window_s:
            attempt += 1
            self.ws_url = self.urls[(index + attempt) % len(self.urls)]
            try:
                await self.connect()
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                logger.info("%s: reconnect to %s failed: %r", self.device_id, self.ws_url, exc)
                await asyncio.sleep(min(0.1 * attempt, 1.0))
                continue
            self.reconnects.append((close_code, self.ws_url, loop.time() - started_s))
            logger.info("%s: reconnected to %s after close code %s", self.device_id, self.ws_url, close_code)
            return
        logger.error("%s: no gateway took the connection within %.0f s", self.device_id, self.reconnect_window_s)

    def _on_gateway_notice(self, event: str, data: dict[str, Any]) -> None:
        if event == "gateway.identified":
            self.device_token = data.get("device_token") or self.device_token
            self.identified.set()

    async def request(self, event: str, data: dict[str, Any] | None = None, timeout_s: float | None = None) -> Any:
        """Send one event and wait for its response data; an error frame raises `ErrorReply`.

        With ``reconnect``, a request the loss of the connection interrupted is sent once more after it is back.
        """
        if not self.reconnect:
            return await self._request(event, data, timeout_s)
        for attempt in (1, 2):
            try:
                await asyncio.wait_for(self._online.wait(), self.reconnect_window_s)
                return await self._request(event, data, timeout_s)
            except ConnectionError:
                if attempt == 2:
                    raise
                logger.info("%s: %s interrupted by a lost connection; sending it again", self.device_id, event)
        raise AssertionError("unreachable")

    async def _request(self, event: str, data: dict[str, Any] | None, timeout_s: float | None) -> Any:
        if self._connection is None:
            raise ConnectionError(f"{self.device_id} is not connected")
        request_id = self._request_ids() if self._request_ids else f"{self.device_id}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        sent_at = asyncio.get_running_loop().time()
        await self._connection.send(json.dumps({"event": event, "request_id": request_id, "data": data or {}}))
        try:
            frame = await asyncio.wait_for(future, timeout_s or self.request_timeout_s)
        finally:
            self._pending.pop(request_id, None)
        if self.latencies_s is not None:
            self.latencies_s.append(asyncio.get_running_loop().time() - sent_at)
        if frame["type"] == "error":
            error = frame.get("error") or {}
            raise ErrorReply(event, error.get("code", "?"), error.get("message", ""), error)
        if self._check_response is not None:
            try:
                self._check_response(event, frame.get("data"))
            except Exception as exc:
                self.violations.append(str(exc))
                raise
        self.answers.append((event, frame.get("data")))
        return frame.get("data")

    async def next_push(self, event: str | None = None, timeout_s: float = 30.0) -> Push:
        """The next push (of ``event`` when given; others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"{self.device_id}: no {event or 'push'} within {timeout_s:.0f}s")
            push = await asyncio.wait_for(self.pushes.get(), remaining)
            if event is None or push.event == event:
                return push

    async def expect(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The data of the next push named ``event`` (earlier pushes are skipped; they stay in ``seen``)."""
        return (await self.next_push(event, timeout_s)).data

    async def refused(
        self, event: str, data: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The error object of a request that must fail (AssertionError if it succeeds)."""
        try:
            answer = await self.request(event, data, timeout_s)
        except ErrorReply as exc:
            return exc.error
        raise AssertionError(f"{event} should have failed but answered {answer}")

    async def disconnect(self) -> None:
        """Close the socket (the device keeps its identity and can `connect` again)."""
        if self._reconnecting is not None and not self._reconnecting.done():
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        connection, self._connection = self._connection, None
        self._online.clear()
        if connection is not None:
            await connection.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def close(self) -> None:
        await self.disconnect()
