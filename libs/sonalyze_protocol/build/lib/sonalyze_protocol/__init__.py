"""Shared wire protocol of the Sonalyze suite (no numpy: the gateway imports it)."""

from sonalyze_protocol.errors import (
    AppError,
    BadRequest,
    Conflict,
    ErrorCode,
    Forbidden,
    InternalError,
    InvalidState,
    MessageTooLarge,
    NotFound,
    NotIdentified,
    RateLimited,
    ServiceUnavailable,
    Timeout,
    Unauthorized,
    UnknownEvent,
)

__all__ = [
    "AppError",
    "BadRequest",
    "Conflict",
    "ErrorCode",
    "Forbidden",
    "InternalError",
    "InvalidState",
    "MessageTooLarge",
    "NotFound",
    "NotIdentified",
    "RateLimited",
    "ServiceUnavailable",
    "Timeout",
    "Unauthorized",
    "UnknownEvent",
]
