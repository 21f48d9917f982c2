"""The client envelope: what a phone sends on ``/ws`` and the three frames it gets back.

Client -> server: ``{"event": str, "request_id": str | int | null, "data": object}``.
Server -> client: ``response`` (echoes event and request_id, carries data), ``event`` (a push),
``error`` (echoes event and request_id, carries ``{"code", "message", ...}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from sonalyze_protocol.errors import AppError, BadRequest
from sonalyze_protocol.json_rule import check_depth, loads_strict

RequestId = str | int | None
MAX_EVENT_CHARS: Final = 100
MAX_REQUEST_ID_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One parsed client message; ``data`` is always a dict."""

    event: str
    request_id: RequestId = None
    data: dict[str, Any] = field(default_factory=dict)


class ResponseFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["response"] = "response"
    event: str
    request_id: RequestId = None
    data: Any = None


class EventFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["event"] = "event"
    event: str
    data: Any = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["error"] = "error"
    event: str | None = None
    request_id: RequestId = None
    error: ErrorBody


class MessageError(BadRequest):
    """A message that could not be parsed; carries what could still be read so the reply can echo it."""

    def __init__(self, message: str, *, event: str | None = None, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.event = event
        self.request_id = request_id


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse and check one client message under the suite's JSON rule (finite numbers, valid text, nesting
    at most `DEFAULT_MAX_JSON_DEPTH`); raises `MessageError` (bad_request) saying what is wrong."""
    try:
        obj = loads_strict(raw, what="message")
    except BadRequest as exc:
        raise MessageError(exc.message) from None
    if not isinstance(obj, dict):
        raise MessageError(f"message must be a JSON object, got {type(obj).__name__}")
    request_id = obj.get("request_id")
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        request_id = None if request_id is None else str(request_id)
    if isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID_CHARS:
        raise MessageError(f"'request_id' is longer than {MAX_REQUEST_ID_CHARS} characters")
    event = obj.get("event")
    if event is None:
        raise MessageError("message needs an 'event' field", request_id=request_id)
    if not isinstance(event, str) or not event:
        raise MessageError("'event' must be a non-empty string", request_id=request_id)
    if len(event) > MAX_EVENT_CHARS:  # never echoed back: the reply would carry the client's whole input
        raise MessageError(f"'event' is longer than {MAX_EVENT_CHARS} characters", request_id=request_id)
    try:
        check_depth(obj, what="message")
    except BadRequest as exc:
        raise MessageError(exc.message, event=event, request_id=request_id) from None
    data = obj.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise MessageError(
            f"'data' must be a JSON object, got {type(data).__name__}", event=event, request_id=request_id
        )
    return ClientMessage(event=event, request_id=request_id, data=data)


def response_frame(event: str, request_id: RequestId, data: Any) -> dict[str, Any]:
    return {"type": "response", "event": event, "request_id": request_id, "data": data}


def event_frame(event: str, data: Any) -> dict[str, Any]:
    return {"type": "event", "event": event, "data": data}


def error_frame(event: str | None, request_id: RequestId, error: AppError) -> dict[str, Any]:
    return {"type": "error", "event": event, "request_id": request_id, "error": error.to_error()}


def dumps(frame: dict[str, Any]) -> str:
    """Serialise a frame to the text sent on the socket."""
    return orjson.dumps(frame).decode()
