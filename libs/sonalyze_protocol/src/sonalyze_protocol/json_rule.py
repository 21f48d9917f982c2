"""The one rule for every JSON document the suite accepts: HTTP bodies and WebSocket messages alike.

A document is accepted only when it is at most ``max_bytes`` long (413 ``message_too_large``), valid
UTF-8 without lone surrogates, holds finite numbers only (no ``NaN``, ``Infinity`` or ``1e999``) and
nests at most ``max_depth`` arrays/objects deep (over HTTP 422 ``bad_request``, the status FastAPI gives
any other malformed JSON body; on a WebSocket an error frame with ``bad_request``). What breaks the rule is answered
in the error envelope before any handler runs, so it is never stored and never fails later on the way out.

``install_json_body_rule(app, settings)`` applies it to every request body of a service that is JSON:
``Content-Type: application/json`` (or ``+json``), or no content type and a body that starts like JSON
(FastAPI parses those as JSON too). Other bodies (audio uploads, multipart) stream past untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sonalyze_protocol.errors import AppError, BadRequest, ErrorCode, MessageTooLarge

DEFAULT_MAX_JSON_BYTES: Final = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH: Final = 32
_JSON_STARTS: Final = frozenset(b'{["')
MALFORMED_JSON_STATUS: Final = 422


def jsonable(value: Any) -> Any:
    """Plain JSON for what a service sends or stores: NaN and infinities as null (JSON has no place for them),
    numpy scalars and arrays as numbers and lists (without importing numpy), datetimes as UTC ISO text,
    pydantic models as their JSON dump; the suite's one NaN-to-null helper."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, float):  # numpy's float64 too
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return jsonable(value.tolist())
    return value


def too_deep(value: Any, max_depth: int) -> bool:
    """True when arrays/objects in ``value`` nest more than ``max_depth`` levels (iterative, stops early)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads_strict(raw: bytes | str, what: str = "body") -> Any:
    """Parse ``raw``: valid UTF-8 without lone surrogates, finite numbers; raises `BadRequest`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":", 1)[0]  # orjson's reason, without the position
        raise BadRequest(f"{what} is not valid JSON ({reason}); numbers must be finite and text valid UTF-8") from None


def check_depth(value: Any, max_depth: int = DEFAULT_MAX_JSON_DEPTH, what: str = "body") -> None:
    if too_deep(value, max_depth):
        raise BadRequest(f"{what} nests deeper than {max_depth} levels")


def parse_json(raw: bytes | str, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, what: str = "body") -> Any:
    """Parse ``raw`` under the rule (size is the caller's check); raises `BadRequest` saying what is wrong."""
    value = loads_strict(raw, what)
    check_depth(value, max_depth, what)
    return value


def install_json_body_rule(app: Any, settings: Any) -> None:
    """Apply the rule to the app's JSON request bodies; ``settings`` gives ``max_json_body_bytes`` and
    ``max_json_depth`` (`ServiceSettings` has both)."""
    app.add_middleware(JsonBodyRule, max_bytes=settings.max_json_body_bytes, max_depth=settings.max_json_depth)


class JsonBodyRule:
    """ASGI middleware: reads a JSON body (bounded), checks it, then hands the same bytes to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_JSON_BYTES,
                 max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:  # fmt: skip
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        declared_json = content_type == b"application/json" or content_type.endswith(b"+json")
        if content_type and not declared_json:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared_json and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send, self._too_large())
            return

        first = await receive()
        chunks = [first.get("body", b"")]
        if not declared_json and first["type"] == "http.request" and not _starts_like_json(chunks[0]):
            await self.app(scope, replay([first], receive), send)  # not JSON (a raw upload): stream on
            return
        size = len(chunks[0])
        message = first
        while message["type"] == "http.request" and message.get("more_body", False) and size <= self.max_bytes:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
        if message["type"] == "http.disconnect":
            return
        if size > self.max_bytes:
            await self._reject(scope, receive, send, self._too_large())
            return
        body = b"".join(chunks)
        if body.strip():
            try:
                parse_json(body, max_depth=self.max_depth)
            except AppError as exc:
                await self._reject(scope, receive, send, exc)
                return
        await self.app(scope, replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)

    def _too_large(self) -> AppError:
        return MessageTooLarge(f"JSON body is larger than {self.max_bytes} bytes")

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, error: AppError) -> None:
        from starlette.responses import JSONResponse

        status = MALFORMED_JSON_STATUS if error.code is ErrorCode.BAD_REQUEST else error.http_status
        await JSONResponse(error.to_body(), status_code=status)(scope, receive, send)


def _starts_like_json(chunk: bytes) -> bool:
    stripped = chunk.lstrip()
    return not stripped or stripped[0] in _JSON_STARTS


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that first yields ``messages``, then what the client still sends (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
