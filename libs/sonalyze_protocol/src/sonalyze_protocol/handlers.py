"""``POST /gateway/handle``: how a service receives WebSocket events from the gateway.

The gateway posts ``GatewayRequest``; the service answers 200 with ``{"data": ...}`` or
``{"error": {"code", "message"}}``. Non-2xx replies mean transport trouble only.
A service declares its events as one literal table::

    HANDLERS = HandlerTable({
        "lobby.create": Handler(LobbyCreate, create_lobby),
        "lobby.join": Handler(LobbyJoin, join_lobby),
    })

and serves it with ``install_gateway_handle(app, settings, HANDLERS, context_factory)``: the documented
FastAPI route plus a fast path in front of the middlewares for the requests that route would serve
(`GatewayHandleFastPath`); each event writes one log line carrying its request and device ids.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER, require_internal_token, settings_token, tokens_match
from sonalyze_protocol.envelope import RequestId
from sonalyze_protocol.errors import AppError, BadRequest, InternalError, UnknownEvent, clip
from sonalyze_protocol.json_rule import parse_json, replay
from sonalyze_protocol.logs import REQUEST_ID_HEADER, bind_context, device_id_var, request_id_var

logger = logging.getLogger("sonalyze.handle")

JSON = "application/json"

C = TypeVar("C")
M = TypeVar("M", bound=BaseModel)


class GatewayRequest(BaseModel):
    """What the gateway forwards for one client message."""

    model_config = ConfigDict(extra="ignore")
    event: str
    request_id: RequestId = None
    device_id: str
    data: dict[str, Any] = {}


MAX_BATCH_EVENTS: Final = 256


class GatewayBatch(BaseModel):
    """What the gateway forwards when several events for one service wait at once (``/gateway/handle_batch``)."""

    model_config = ConfigDict(extra="ignore")
    events: list[GatewayRequest] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class BatchedReply(BaseModel):
    """One event's answer in a batch: the HTTP status and body ``/gateway/handle`` would have given it."""

    status: int
    reply: dict[str, Any]


class GatewayBatchReply(BaseModel):
    """The answers in the order of the batch's events."""

    replies: list[BatchedReply]


class GatewayReply(BaseModel):
    """Exactly one of ``data`` or ``error`` is meaningful; ``error`` wins when present."""

    data: Any = None
    error: dict[str, Any] | None = None


class EmptyData(BaseModel):
    """For events that take no data; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")


@dataclass(frozen=True, slots=True)
class Handler(Generic[C, M]):
    """One event: the pydantic model its ``data`` must fit and the coroutine that serves it."""

    model: type[M]
    func: Callable[[C, M], Awaitable[Any]]


def describe_validation_error(exc: ValidationError, prefix: str = "data") -> str:
    """A one-line message naming the first offending field, e.g. ``data.code: Field required``."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(clip(p) for p in (prefix, *err.get("loc", ())) if p != "")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid data"


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return jsonable_encoder(value)


class HandlerTable(Generic[C]):
    """Event name -> `Handler`; `dispatch` validates, calls and turns errors into reply bodies."""

    def __init__(self, handlers: Mapping[str, Handler[C, Any]]) -> None:
        self._handlers = dict(handlers)

    @property
    def events(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def call(self, context: C, event: str, data: dict[str, Any]) -> Any:
        """Validate ``data`` and run the handler; raises `AppError`."""
        handler = self._handlers.get(event)
        if handler is None:
            raise UnknownEvent(f"unknown event '{clip(event)}'")
        try:
            parsed = handler.model.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(describe_validation_error(exc)) from None
        return await handler.func(context, parsed)

    async def dispatch(self, context: C, request: GatewayRequest) -> dict[str, Any]:
        """The reply body for one request: ``{"data": ...}`` or ``{"error": ...}``; never raises."""
        started = time.perf_counter()
        try:
            result = await self.call(context, request.event, request.data)
            reply: dict[str, Any] = {"data": to_jsonable(result)}
            outcome = "ok"
        except AppError as exc:
            reply = exc.to_body()
            outcome = exc.code.value
        except Exception:
            logger.exception("handler for %s failed", request.event)
            reply = InternalError(f"{request.event} failed unexpectedly").to_body()
            outcome = "internal_error"
        logger.info(
            "event=%s outcome=%s duration_ms=%.1f",
            request.event,
            outcome,
            (time.perf_counter() - started) * 1000,
        )
        return reply


ContextFactory = Callable[[Request, GatewayRequest], AbstractAsyncContextManager[C]]
HANDLE_PATH: Final = "/gateway/handle"
HANDLE_BATCH_PATH: Final = "/gateway/handle_batch"
_FAST_PATHS: Final = frozenset({HANDLE_PATH, HANDLE_BATCH_PATH})
_JSON_TYPE: Final = b"application/json"
_REQUEST_ID_HEADER: Final = REQUEST_ID_HEADER.encode()
_TOKEN_HEADER: Final = INTERNAL_TOKEN_HEADER.lower().encode()


class GatewayHandle(Generic[C]):
    """What ``POST /gateway/handle`` does with a well-formed, authenticated request: binds its ids for the
    log, builds the handler's context, dispatches and serialises the reply (both transports below share it)."""

    def __init__(
        self, table: HandlerTable[C], context_factory: ContextFactory[C], token: Callable[[Request], str]
    ) -> None:
        self.table = table
        self.context_factory = context_factory
        self.token = token

    async def reply(self, request: Request, body: GatewayRequest) -> bytes:
        """The serialised reply; an `AppError` while building the context is a reply too, any other
        exception from the context (a database outage at its close) propagates to the app's handlers."""
        try:
            async with self.context_factory(request, body) as context:
                reply = await self.table.dispatch(context, body)
        except AppError as exc:  # raised while building the context
            reply = exc.to_body()
        # already plain JSON: serialised once here, not validated again against GatewayReply (the
        # response_model documents the shape); the hottest route of the suite
        return orjson.dumps({k: v for k, v in reply.items() if v is not None}, default=jsonable_encoder)

    async def reply_batch(self, request: Request, bodies: list[GatewayRequest], request_id: str) -> bytes:
        """The serialised `GatewayBatchReply`: the events run concurrently, as they would in separate requests,
        each with its own ids bound for its log line and its own status (an outage: 503)."""

        async def one(body: GatewayRequest) -> bytes:
            request_id_var.set(str(body.request_id) if body.request_id is not None else request_id)
            device_id_var.set(body.device_id)  # (each runs in a task of its own: the context is its copy)
            try:
                return b'{"status":200,"reply":%s}' % await self.reply(request, body)
            except Exception as exc:
                status, content = await _handled_or_internal(request, exc)
                return b'{"status":%d,"reply":%s}' % (status, content)

        replies = await asyncio.gather(*(one(body) for body in bodies))
        return b'{"replies":[' + b",".join(replies) + b"]}"


def gateway_handle_router(
    table: HandlerTable[C],
    context_factory: ContextFactory[C],
    *,
    token: Callable[[Request], str] = settings_token,
) -> APIRouter:
    """The ``POST /gateway/handle`` route serving ``table``, guarded by the internal token: the operation
    as OpenAPI documents it and the reference the fast path (`install_gateway_handle`) must match."""
    router = APIRouter()
    served = GatewayHandle(table, context_factory, token)

    @router.post(
        HANDLE_PATH,
        dependencies=[Depends(require_internal_token(token))],
        response_model=GatewayReply,
        response_model_exclude_none=True,
        tags=["internal"],
    )
    async def handle(body: GatewayRequest, request: Request) -> Response:
        """Serve one WebSocket event forwarded by the gateway."""
        with bind_context(request_id=body.request_id, device_id=body.device_id):
            return Response(await served.reply(request, body), media_type=JSON)

    @router.post(
        HANDLE_BATCH_PATH,
        dependencies=[Depends(require_internal_token(token))],
        response_model=GatewayBatchReply,
        tags=["internal"],
    )
    async def handle_batch(body: GatewayBatch, request: Request) -> Response:
        """Serve several WebSocket events forwarded together (the gateway batches what waits while the
        service is busy); each answer is what ``/gateway/handle`` would have answered, in order."""
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:12]
        return Response(await served.reply_batch(request, body.events, request_id), media_type=JSON)

    return router


def install_gateway_handle(
    app: FastAPI,
    settings: Any,
    table: HandlerTable[C],
    context_factory: ContextFactory[C],
    *,
    token: Callable[[Request], str] = settings_token,
) -> None:
    """Serve ``POST /gateway/handle`` from ``table``: the documented FastAPI route, and in front of every
    middleware a fast path (`GatewayHandleFastPath`) that answers the requests the route would serve
    without error. Call it after the app's last ``add_middleware`` (the last added is the outermost)."""
    app.include_router(gateway_handle_router(table, context_factory, token=token))
    app.add_middleware(
        GatewayHandleFastPath,
        served=GatewayHandle(table, context_factory, token),
        max_bytes=settings.max_json_body_bytes,
        max_depth=settings.max_json_depth,
    )


class GatewayHandleFastPath:
    """Pure ASGI middleware: serves a forwarded event outside the middleware stack and FastAPI's routing,
    dependencies and validation (together ~60 % of the CPU of an event that needs no database).

    It serves only what the documented route would serve without error: a POST with the right internal
    token and a JSON body that keeps the JSON rule (the same size and depth limits, finite numbers, valid
    UTF-8) and fits `GatewayRequest`; it then writes the one log line of the event (`HandlerTable.dispatch`)
    with its request and device ids. Anything else (another path or method, a wrong token, a body
    too large, malformed or not an envelope) goes on, with the bytes read so far, through the whole stack,
    which answers it as before. An exception escaping the context is answered by the app's exception
    handlers (a database outage: 503), as the route's would be.
    """

    def __init__(self, app: ASGIApp, *, served: GatewayHandle[Any], max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.served = served
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _FAST_PATHS or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = length = given_token = header_request_id = None
        for name, value in reversed(scope["headers"]):  # the first of a repeated header wins, as in Starlette
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == _TOKEN_HEADER:
                given_token = value
            elif name == _REQUEST_ID_HEADER:
                header_request_id = value
        request = Request(scope, receive)
        if (
            given_token is None
            or (content_type is not None and content_type.split(b";", 1)[0].strip().lower() != _JSON_TYPE)
            or (length is not None and (not length.isdigit() or int(length) > self.max_bytes))
            or not tokens_match(self.served.token(request), given_token.decode("latin-1"))
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                await self.app(scope, replay(messages, receive), send)  # the stack sees the disconnect
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self.app(scope, replay(messages, receive), send)
                return
            if not message.get("more_body", False):
                break
        raw = messages[0].get("body", b"") if len(messages) == 1 else b"".join(m.get("body", b"") for m in messages)
        request_id = header_request_id or uuid.uuid4().hex[:12].encode()
        try:
            if scope["path"] == HANDLE_BATCH_PATH:
                batch = GatewayBatch.model_validate(parse_json(raw, max_depth=self.max_depth + 2))
            else:
                body = GatewayRequest.model_validate(parse_json(raw, max_depth=self.max_depth))
        except (AppError, ValidationError):
            await self.app(scope, replay(messages, receive), send)
            return
        if scope["path"] == HANDLE_BATCH_PATH:
            content = await self.served.reply_batch(request, batch.events, request_id.decode("latin-1"))
            await _send_json(send, content, request_id)
            return
        await self._serve(scope, request, body, request_id, send)

    async def _serve(self, scope: Scope, request: Request, body: GatewayRequest, request_id: bytes,
                     send: Send) -> None:  # fmt: skip
        request_id_token = request_id_var.set(
            str(body.request_id) if body.request_id is not None else request_id.decode("latin-1")
        )
        device_id_token = device_id_var.set(body.device_id)
        try:
            try:
                content = await self.served.reply(request, body)
            except Exception as exc:
                response = await _handled(request, exc)
                response.headers[REQUEST_ID_HEADER] = request_id.decode("latin-1")
                await response(scope, request.receive, send)
                return
        finally:
            device_id_var.reset(device_id_token)
            request_id_var.reset(request_id_token)
        await _send_json(send, content, request_id)


async def _send_json(send: Send, content: bytes, request_id: bytes) -> None:
    """A 200 answer carrying ``content`` (JSON) and the request id."""
    headers = [(b"content-type", _JSON_TYPE), (b"content-length", b"%d" % len(content)),
               (_REQUEST_ID_HEADER, request_id)]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def _handled_or_internal(request: Request, exc: Exception) -> tuple[int, bytes]:
    """Status and body of the app's answer to ``exc`` (`_handled`); an exception no handler takes is an
    ``internal_error`` 500, as the server would answer it, logged."""
    try:
        response = await _handled(request, exc)
    except Exception:
        logger.exception("a batched event failed")
        return 500, orjson.dumps(InternalError("the event failed unexpectedly").to_body())
    return response.status_code, bytes(response.body)


async def _handled(request: Request, exc: Exception) -> Response:
    """The response of the app's exception handler for ``exc`` (nearest class first); none: re-raised."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            return cast(Response, response)
    raise exc


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler knows about its caller, plus the app's state (settings, clients, pools)."""

    device_id: str
    request_id: RequestId
    state: Any


@asynccontextmanager
async def plain_context(request: Request, body: GatewayRequest) -> AsyncIterator[RequestContext]:
    """The context factory for services whose handlers need no per-request resources."""
    yield RequestContext(device_id=body.device_id, request_id=body.request_id, state=request.app.state)
