"""The gateway's outbound HTTP: events to ``/gateway/handle``, lifecycle notices, and the streaming proxy.

Events go through `Http1Pool`, a lean keep-alive client made for that one call: the gateway forwards
thousands a second, and on this stack httpx spent 0.5-2 ms of CPU per post, aiohttp 55-90 us, the
pool far less (bench/gateway_clients.py, figures in the README). The proxy, which needs full HTTP
(any method, streamed bodies both ways, every header), uses aiohttp.

Failures map onto the suite's codes: no connection -> ``service_unavailable``, no answer within
``HTTP_TIMEOUT_SECONDS`` -> ``timeout``. ``TimeoutError`` is caught first because some of aiohttp's
timeouts are also ``ClientError``s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from yarl import URL

from sonalyze_gateway.batching import BATCH_AFTER_IN_FLIGHT, RequestBatcher
from sonalyze_gateway.http1_pool import ConnectFailed, ConnectionFailed, Http1Pool, ResponseTimeout
from sonalyze_gateway.router import Target
from sonalyze_gateway.seen_devices import SeenDevices
from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER
from sonalyze_protocol.disconnect import stop_when_client_leaves
from sonalyze_protocol.envelope import RequestId
from sonalyze_protocol.errors import AppError, InternalError, ServiceUnavailable, Timeout, code_for_status
from sonalyze_protocol.http_errors import error_response
from sonalyze_protocol.logs import request_id_var

logger = logging.getLogger("sonalyze.gateway.http")

HANDLE_PATH: Final = "/gateway/handle"
HANDLE_BATCH_PATH: Final = "/gateway/handle_batch"
# events to these targets are batched while the service is busy (`RequestBatcher`): the lobby's are short
BATCHED_TARGETS: Final = frozenset({Target.LOBBY})
BATCH_MAX_EVENTS: Final = 64
BATCH_MAX_BYTES: Final = 512 * 1024  # half the services' JSON body limit; an event is at most 64 KiB
MAX_POOLED_CONNECTIONS: Final = 256
HEADER_VALUE_MAX_CHARS: Final = 128
LIFECYCLE_DRAIN_S: Final = 2.0
# connected/disconnected notices to the lobby, in batches of at most this many (see LifecycleNotifier)
PRESENCE_EVENT: Final = "device.presence"
PRESENCE_BATCH_MAX: Final = 500
PRESENCE_SENDER: Final = "gateway"  # the batch's device_id: the lobby's envelope asks for one
# not forwarded by the proxy in either direction: they describe one hop, not the message
HOP_BY_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
        INTERNAL_TOKEN_HEADER.lower(),
    }
)
# the gateway's own request-log middleware adds X-Request-Id (the same id) to every response
_DROPPED_RESPONSE_HEADERS: Final = HOP_BY_HOP_HEADERS | {"x-request-id"}
_SKIP_AUTO_HEADERS: Final = frozenset({"Content-Type", "Accept-Encoding", "User-Agent"})
# a request the proxy may send twice: its method is idempotent and it has no body (a streamed body is spent)
RETRIED_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# a pooled keep-alive connection the service had already closed: nothing reached the service
_DEAD_CONNECTION_ERRORS: Final = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class _DropAfterServerError(aiohttp.ClientResponse):
    """A response whose connection is never reused after a 5xx: a service failing on an unhandled error
    closes that connection a moment after answering, and the next request sent on it would fail."""

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        await super().start(connection)
        if self.status >= 500 and protocol is not None:
            protocol.force_close()  # closed when released, if the body is still streaming
            if self.connection is None:  # a short body was read whole and the connection already pooled
                protocol.close()
        return self


def make_session() -> aiohttp.ClientSession:
    """The shared session; call inside the running loop (the lifespan)."""
    connector = aiohttp.TCPConnector(limit=MAX_POOLED_CONNECTIONS, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        auto_decompress=False,
        response_class=_DropAfterServerError,
    )


def header_safe(value: RequestId) -> str | None:
    """A request id usable as a header value (printable ASCII, bounded), else None."""
    if value is None:
        return None
    text = str(value)
    if len(text) > HEADER_VALUE_MAX_CHARS or not text.isascii() or not text.isprintable():
        return None
    return text


class EventForwarder:
    """Posts one client event to a service's ``/gateway/handle`` and returns its ``data`` or raises `AppError`.

    A target's URL may list replicas, comma-separated (``LOBBY_URL``): events go to the last one that
    answered, and to the next one when no connection can be made (nothing was sent, so nothing is sent twice).
    Events to a target in ``batched`` go through a `RequestBatcher`: one per request while the service keeps
    up, what waits beyond ``batch_after_in_flight`` requests as one ``/gateway/handle_batch``. Only short
    events are batched (the lobby's): a long one (``simulation.run``) would hold up the others in its batch,
    and leaving one stops it only because its request is dropped.
    """

    def __init__(
        self,
        base_urls: Mapping[Target, str],
        token: str,
        timeout_s: float,
        *,
        batched: frozenset[Target] = BATCHED_TARGETS,
        batch_after_in_flight: int = BATCH_AFTER_IN_FLIGHT,
        batch_max_events: int = BATCH_MAX_EVENTS,
    ) -> None:
        if not (token.isascii() and token.isprintable()):
            raise ValueError("INTERNAL_AUTH_TOKEN must be printable ASCII (it travels in a header)")
        self._pools = {target: [Http1Pool(u) for u in replica_urls(url)] for target, url in base_urls.items()}
        self._heads = {
            path: {
                target: [
                    pool.request_head(path, [], 0).removesuffix(b"Content-Length: 0\r\n\r\n")
                    + f"Content-Type: application/json\r\n{INTERNAL_TOKEN_HEADER}: {token}\r\n".encode("ascii")
                    for pool in pools
                ]
                for target, pools in self._pools.items()
            }
            for path in (HANDLE_PATH, HANDLE_BATCH_PATH)
        }
        self._current = dict.fromkeys(self._pools, 0)
        self._timeout_s = timeout_s
        self.batchers: dict[Target, RequestBatcher[_Event, tuple[int, Any]]] = {
            target: RequestBatcher(
                functools.partial(self._post_one, target),
                functools.partial(self._post_batch, target),
                max_in_flight=batch_after_in_flight,
                max_events=batch_max_events,
                max_bytes=BATCH_MAX_BYTES,
            )
            for target in batched
            if target in self._pools
        }

    async def forward(
        self, target: Target, event: str, request_id: RequestId, device_id: str, data: dict[str, Any]
    ) -> Any:
        body = _Event(
            orjson.dumps({"event": event, "request_id": request_id, "device_id": device_id, "data": data}),
            header_safe(device_id),
            header_safe(request_id),
        )
        batcher = self.batchers.get(target)
        status, reply = await (batcher.submit(body) if batcher is not None else self._post_one(target, body))
        return _reply_data(target, status, reply)

    async def _post_one(self, target: Target, event: _Event) -> tuple[int, Any]:
        extra = b""
        if event.device_id is not None:
            extra += f"X-Device-Id: {event.device_id}\r\n".encode()
        if event.request_id is not None:
            extra += f"X-Request-Id: {event.request_id}\r\n".encode()
        status, raw = await self._post(target, HANDLE_PATH, extra, event.body)
        return status, _loads(raw)

    async def _post_batch(self, target: Target, events: list[_Event]) -> list[tuple[int, Any]]:
        logger.debug("%d events to %s in one batch", len(events), target)
        status, raw = await self._post(
            target, HANDLE_BATCH_PATH, b"", b'{"events":[' + b",".join(e.body for e in events) + b"]}"
        )
        reply = _loads(raw)
        replies = reply.get("replies") if status == 200 and isinstance(reply, dict) else None
        if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
            _reply_data(target, status, reply)  # raises what a single event's request would have
            raise InternalError(f"{target} sent a batch reply without its replies")
        return [(r.get("status", 0), r.get("reply")) for r in replies]

    async def _post(self, target: Target, path: str, extra_headers: bytes, body: bytes) -> tuple[int, bytes]:
        tail = extra_headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        pools, start = self._pools[target], self._current[target]
        failure = ""
        for step in range(len(pools)):
            index = (start + step) % len(pools)
            try:
                status, raw = await pools[index].post(self._heads[path][target][index] + tail, self._timeout_s)
            except ConnectFailed as exc:  # nothing was sent: the next replica may take it
                failure = str(exc)
                continue
            except ResponseTimeout:
                raise Timeout(f"{target} did not answer within {self._timeout_s:g}s") from None
            except ConnectionFailed as exc:
                raise ServiceUnavailable(f"{target} is unavailable: {exc}") from None
            self._current[target] = index
            return status, raw
        raise ServiceUnavailable(f"{target} is unavailable: {failure}")

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for pools in self._pools.values():
            for pool in pools:
                pool.close()


@dataclass(frozen=True, slots=True)
class _Event:
    """One event as the forwarder sends it: its JSON body and the ids its own request would carry as headers."""

    body: bytes
    device_id: str | None
    request_id: str | None

    def __len__(self) -> int:
        return len(self.body)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def replica_urls(url: str) -> list[str]:
    """The replicas of a comma-separated URL list, in order (one URL: itself)."""
    return [part.strip().rstrip("/") for part in url.split(",") if part.strip()]


def _reply_data(target: Target, status: int, reply: Any) -> Any:
    """``{"data": ...}`` -> data; ``{"error": {...}}`` -> that error raised; anything else -> a clear error."""
    if isinstance(reply, dict):
        error = reply.get("error")
        if isinstance(error, dict):
            raise AppError.from_error(error)
        if status == 200:
            return reply.get("data")
    if status == 200:
        raise InternalError(f"{target} sent a reply that is not {{data}} or {{error}}")
    if status in (502, 503):
        raise ServiceUnavailable(f"{target} answered HTTP {status}")
    logger.warning("%s answered HTTP %d to /gateway/handle", target, status)
    raise AppError(f"{target} answered HTTP {status}", code=code_for_status(status))


class LifecycleNotifier:
    """Tells the lobby when a device's first connection opens and its last one closes, best effort.

    Notices go out as ``device.presence`` batches, one request at a time and in the order they were
    given (a quick reconnect never arrives as connected-then-disconnected): a lone notice is sent at
    once, and what comes while a batch is on the way goes out together next. A connect storm of 1000
    phones thus costs the lobby a few requests and write transactions instead of 1000 of each, and no
    socket ever waits for the lobby.
    """

    def __init__(
        self, forwarder: EventForwarder, seen: SeenDevices | None = None, batch_max: int = PRESENCE_BATCH_MAX
    ) -> None:
        self._forwarder = forwarder
        self._seen = seen  # each notice also widens the device's seen window in storage (batched)
        self._batch_max = batch_max
        self._queue: list[tuple[str, bool]] = []
        self._sender: asyncio.Task[None] | None = None

    def notify(self, device_id: str, event: str) -> None:
        """Queue ``device.connected`` or ``device.disconnected`` of ``device_id``."""
        self._queue.append((device_id, event == "device.connected"))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all(), name="presence")

    async def _send_all(self) -> None:
        await asyncio.sleep(0)  # notices given in the same turn of the loop (a mass close) go out together
        while self._queue:
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max :]
            changes = [{"device_id": device_id, "connected": connected} for device_id, connected in batch]
            try:
                await self._forwarder.forward(Target.LOBBY, PRESENCE_EVENT, None, PRESENCE_SENDER, {"changes": changes})
            except AppError as exc:
                logger.warning("%d presence notices not delivered to lobby: %s %s", len(batch), exc.code.value,
                               exc.message)  # fmt: skip
            except Exception:
                logger.exception("%d presence notices failed", len(batch))
            if self._seen is not None:
                for device_id, _ in batch:
                    self._seen.seen(device_id)

    @property
    def pending(self) -> int:
        """Notices not yet sent (the batch on the way not included)."""
        return len(self._queue)

    async def drain(self, timeout_s: float = LIFECYCLE_DRAIN_S) -> None:
        """Give queued notices a moment (shutdown), then cancel what is left."""
        if self._sender is None or self._sender.done():
            return
        _, late = await asyncio.wait({self._sender}, timeout=timeout_s)
        for task in late:
            task.cancel()


class Proxy:
    """Streams an HTTP request to a service and its response back; neither body is held whole in memory."""

    def __init__(self, session: aiohttp.ClientSession, base_urls: Mapping[Target, str], timeout_s: float) -> None:
        self._session = session
        self._bases = dict(base_urls)
        # no total: a 50 MB upload may take longer than the timeout; connecting and each read are bounded
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._timeout_s = timeout_s

    async def forward(self, request: Request, target: Target, upstream_path: str) -> Response:
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = URL(self._bases[target] + upstream_path + (f"?{query}" if query else ""), encoded=True)
        headers = [(k, v) for k, v in request.headers.items() if k not in HOP_BY_HOP_HEADERS]
        if (rid := request_id_var.get()) is not None and "x-request-id" not in request.headers:
            headers.append(("x-request-id", rid))
        raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if upstream_path != raw_path and raw_path.endswith(upstream_path.rstrip("/")):
            # the service builds links (a simulation's ir_url) under the path the client used
            prefix = raw_path[: len(raw_path) - len(upstream_path.rstrip("/"))]
            headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-prefix"]
            headers.append(("x-forwarded-prefix", prefix))
        has_body = "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0"
        attempts = 2 if request.method in RETRIED_METHODS and not has_body else 1
        # a client that leaves before the answer closes the upstream connection too, which stops the
        # service's work where it listens for that (a simulation, an analysis)
        body_sent = asyncio.Event() if has_body else None
        for attempt in range(1, attempts + 1):
            try:
                async with stop_when_client_leaves(request, after=body_sent):
                    upstream = await self._session.request(
                        request.method,
                        url,
                        headers=headers,
                        data=_request_body(request, body_sent) if body_sent is not None else None,
                        allow_redirects=False,
                        timeout=self._timeout,
                    )
                break
            except TimeoutError:
                return error_response(504, "timeout", f"{target} did not answer within {self._timeout_s:g}s")
            except ClientDisconnect:
                return error_response(400, "bad_request", "the client went away during the upload")
            except _DEAD_CONNECTION_ERRORS as exc:
                if attempt < attempts:
                    logger.info("%s closed a pooled connection (%s); sending again", target, type(exc).__name__)
                    continue
                return error_response(503, "service_unavailable", f"{target} is unavailable ({type(exc).__name__})")
            except aiohttp.ClientError as exc:
                return error_response(503, "service_unavailable", f"{target} is unavailable ({type(exc).__name__})")
        response = StreamingResponse(_response_body(upstream, target), status_code=upstream.status)
        response.raw_headers = [
            (name, value)
            for name, value in upstream.raw_headers
            if name.lower().decode("latin-1") not in _DROPPED_RESPONSE_HEADERS
        ]
        return response


async def _request_body(request: Request, sent: asyncio.Event) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk
    sent.set()


async def _response_body(upstream: aiohttp.ClientResponse, target: Target) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except (TimeoutError, aiohttp.ClientError) as exc:
        # headers are gone already; the client sees a short body, the log says why
        logger.warning("response body from %s broke off: %r", target, exc)
        upstream.close()
    finally:
        upstream.release()
