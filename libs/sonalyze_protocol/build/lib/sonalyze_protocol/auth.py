"""The internal token that services present to each other in ``X-Internal-Token``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import Request

from sonalyze_protocol.errors import Unauthorized

INTERNAL_TOKEN_HEADER: Final = "X-Internal-Token"
# values published in earlier compose files and examples: a service refuses to start with one of them
PUBLIC_INTERNAL_TOKENS: Final = frozenset({"sonalyze_internal_token", "change-me-to-a-long-random-token"})


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an empty expected or given token never matches (no accidental open door)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def require_internal_token(expected_token: Callable[[Request], str]) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that answers 401 unless the request carries the expected token."""

    async def check(request: Request) -> None:  # async: a sync dependency would cost a threadpool hop
        if not tokens_match(expected_token(request), request.headers.get(INTERNAL_TOKEN_HEADER)):
            raise Unauthorized(f"missing or wrong {INTERNAL_TOKEN_HEADER} header")

    return check


def settings_token(request: Request) -> str:
    """The token from ``app.state.settings.internal_auth_token`` (every service's settings have it)."""
    token: str = request.app.state.settings.internal_auth_token
    return token
