"""``POST /gateway/handle``: how a service receives WebSocket events from the gateway.

The gateway posts ``GatewayRequest``; the service answers 200 with ``{"data": ...}`` or
``{"error": {"code", "message"}}``. Non-2xx replies mean transport trouble only.
A service declares its events as one literal table::

    HANDLERS = HandlerTable({
        "lobby.create": Handler(LobbyCreate, create_lobby),
        "lobby.join": Handler(LobbyJoin, join_lobby),
    })
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, ValidationError

from sonalyze_protocol.auth import require_internal_token, settings_token
from sonalyze_protocol.envelope import RequestId
from sonalyze_protocol.errors import AppError, BadRequest, InternalError, UnknownEvent, clip
from sonalyze_protocol.logs import bind_context

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


def gateway_handle_router(
    table: HandlerTable[C],
    context_factory: ContextFactory[C],
    *,
    token: Callable[[Request], str] = settings_token,
) -> APIRouter:
    """The ``POST /gateway/handle`` route serving ``table``, guarded by the internal token."""
    router = APIRouter()

    @router.post(
        "/gateway/handle",
        dependencies=[Depends(require_internal_token(token))],
        response_model=GatewayReply,
        response_model_exclude_none=True,
        tags=["internal"],
    )
    async def handle(body: GatewayRequest, request: Request) -> Response:
        """Serve one WebSocket event forwarded by the gateway."""
        with bind_context(request_id=body.request_id, device_id=body.device_id):
            try:
                async with context_factory(request, body) as context:
                    reply = await table.dispatch(context, body)
            except AppError as exc:  # raised while building the context
                reply = exc.to_body()
        # already plain JSON: serialised once here, not validated again against GatewayReply (the
        # response_model documents the shape); the hottest route of the suite
        content = orjson.dumps({k: v for k, v in reply.items() if v is not None}, default=jsonable_encoder)
        return Response(content, media_type=JSON)

    return router


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
