"""Error codes of the suite and the one type that carries them.

    AppError(code, message, **extra)
     ├── BadRequest            bad_request          400
     ├── Unauthorized          unauthorized         401
     ├── Forbidden             forbidden            403
     ├── NotFound              not_found            404
     ├── Conflict              conflict             409
     ├── InvalidState          invalid_state        409
     ├── DeviceInUse           device_in_use        409  (another live socket holds the device id)
     ├── MessageTooLarge       message_too_large    413
     ├── RateLimited           rate_limited         429  (extra: retry_after_ms)
     ├── InternalError         internal_error       500
     ├── ServiceUnavailable    service_unavailable  503
     ├── Overloaded            overloaded           503  (extra: retry_after_ms)
     ├── Timeout               timeout              504
     ├── NotIdentified         not_identified       WebSocket only
     └── UnknownEvent          unknown_event        WebSocket only

Subclasses only fix the code. Every transport renders the same body:
``{"error": {"code": ..., "message": ..., **extra}}``. A message is client-facing: `client_text`
replaces server file paths with ``<path>`` and cuts it to `MAX_MESSAGE_CHARS`, so no error tells a
client where the server keeps its files or echoes more than a short prefix of the client's input.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from functools import cache
from typing import Any, Final

MAX_MESSAGE_CHARS: Final = 500
MAX_ECHO_CHARS: Final = 64
"""How much of a client's own input an error message may quote (`clip`)."""
_PATH_PATTERN: Final = re.compile(r"(?<![\w.:/~<])/([\w.-]+)((?:/[^\s'\",;)]*)?)")


@cache
def _root_dirs() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/"))
    except OSError:
        return frozenset({"tmp", "home", "usr", "var", "opt", "srv", "root", "work", "app", "data"})


def redact_paths(text: str) -> str:
    """``/tmp/x/upload.part`` -> ``<path>``: absolute paths under this machine's top-level folders
    (a route such as ``/v1/jobs`` is left alone: there is no ``/v1`` folder)."""

    def replace(match: re.Match[str]) -> str:
        return "<path>" if match.group(1) in _root_dirs() else match.group(0)

    return _PATH_PATTERN.sub(replace, text)


def clip(value: object, max_chars: int = MAX_ECHO_CHARS) -> str:
    """A short prefix of a client's input (a field name, an event) for an error message."""
    text = str(value)
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def client_text(message: str) -> str:
    """A message fit for a client: no server paths, at most `MAX_MESSAGE_CHARS` characters."""
    text = redact_paths(message)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    NOT_IDENTIFIED = "not_identified"
    UNKNOWN_EVENT = "unknown_event"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_STATE = "invalid_state"
    DEVICE_IN_USE = "device_in_use"
    SERVICE_UNAVAILABLE = "service_unavailable"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    INTERNAL_ERROR = "internal_error"


HTTP_STATUS_BY_CODE: Final[dict[ErrorCode, int]] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.NOT_IDENTIFIED: 400,
    ErrorCode.UNKNOWN_EVENT: 400,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.DEVICE_IN_USE: 409,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.INTERNAL_ERROR: 500,
}

CODE_BY_HTTP_STATUS: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.MESSAGE_TOO_LARGE,
    415: ErrorCode.BAD_REQUEST,
    422: ErrorCode.BAD_REQUEST,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}


def code_for_status(status_code: int) -> ErrorCode:
    """The error code an HTTP status stands for (unknown 4xx -> bad_request, 5xx -> internal_error)."""
    if status_code in CODE_BY_HTTP_STATUS:
        return CODE_BY_HTTP_STATUS[status_code]
    return ErrorCode.BAD_REQUEST if status_code < 500 else ErrorCode.INTERNAL_ERROR


class AppError(Exception):
    """A failure the caller should see, with its code; never rendered as an unexplained 500."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | str | None = None, **extra: Any) -> None:
        message = client_text(message)
        super().__init__(message)
        if code is not None:
            self.code = ErrorCode(code)
        self.message = message
        self.extra = extra

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE[self.code]

    def to_error(self) -> dict[str, Any]:
        """The inner error object: ``{"code", "message", **extra}``."""
        return {"code": self.code.value, "message": self.message, **self.extra}

    def to_body(self) -> dict[str, Any]:
        return {"error": self.to_error()}

    @classmethod
    def from_error(cls, error: dict[str, Any]) -> AppError:
        """Rebuild an error received from another service (unknown codes become internal_error)."""
        raw_code = str(error.get("code", ErrorCode.INTERNAL_ERROR))
        code = ErrorCode(raw_code) if raw_code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL_ERROR
        extra = {k: v for k, v in error.items() if k not in ("code", "message")}
        return AppError(str(error.get("message", "")), code=code, **extra)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class BadRequest(AppError):
    code = ErrorCode.BAD_REQUEST


class Unauthorized(AppError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND


class Conflict(AppError):
    code = ErrorCode.CONFLICT


class InvalidState(AppError):
    code = ErrorCode.INVALID_STATE


class DeviceInUse(AppError):
    code = ErrorCode.DEVICE_IN_USE


class MessageTooLarge(AppError):
    code = ErrorCode.MESSAGE_TOO_LARGE


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED


class InternalError(AppError):
    code = ErrorCode.INTERNAL_ERROR


class ServiceUnavailable(AppError):
    code = ErrorCode.SERVICE_UNAVAILABLE


class Overloaded(AppError):
    """The service has as much work in flight as it may; try again after ``retry_after_ms``."""

    code = ErrorCode.OVERLOADED


class Timeout(AppError):
    code = ErrorCode.TIMEOUT


class NotIdentified(AppError):
    code = ErrorCode.NOT_IDENTIFIED


class UnknownEvent(AppError):
    code = ErrorCode.UNKNOWN_EVENT
