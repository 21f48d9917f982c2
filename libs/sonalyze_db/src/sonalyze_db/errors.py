"""Database errors as the suite's error codes: an outage is ``service_unavailable`` (503) everywhere.

Three ways in, one mapping (`database_unavailable`):

- `install_outage_handlers(app)`: HTTP routes, through FastAPI exception handlers;
- `guard_handlers(table)`: every gateway event of a handler table (``/gateway/handle`` answers 200 with
  an error body, so exception handlers never see its errors);
- `guard_database`: one coroutine.

`is_unique_violation` and `is_foreign_key_violation` recognise both drivers: asyncpg by SQLSTATE
(23505, 23503), SQLite by its message text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc

from sonalyze_protocol.errors import ServiceUnavailable
from sonalyze_protocol.handlers import Handler

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")
logger = logging.getLogger("sonalyze.db")

UNIQUE_VIOLATION: Final = "23505"
FOREIGN_KEY_VIOLATION: Final = "23503"

# what a lost or refused database connection surfaces as (asyncpg may raise OSError before SQLAlchemy wraps it)
DATABASE_DOWN_ERRORS: Final[tuple[type[Exception], ...]] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    OSError,
)


def database_unavailable(error: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"database unavailable: {type(error).__name__}")


def guard_database(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Turn a database outage inside ``func`` into `ServiceUnavailable` (503) instead of an internal error."""

    @functools.wraps(func)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except DATABASE_DOWN_ERRORS as error:
            logger.warning("database unavailable in %s: %s", getattr(func, "__name__", func), error)
            raise database_unavailable(error) from None

    return guarded


def guard_handlers(handlers: Mapping[str, Handler[C, Any]]) -> dict[str, Handler[C, Any]]:
    """The same handlers, each guarded by `guard_database`."""
    return {name: Handler(handler.model, guard_database(handler.func)) for name, handler in handlers.items()}


async def _database_down(request: Request, error: Exception) -> JSONResponse:
    unavailable = database_unavailable(error)
    logger.warning("%s %s: %s", request.method, request.url.path, unavailable.message)
    return JSONResponse(unavailable.to_body(), status_code=unavailable.http_status)


def install_outage_handlers(app: FastAPI) -> None:
    """HTTP: an outage anywhere in a route answers 503 ``service_unavailable``."""
    for error_type in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(error_type, _database_down)


def sqlstate(error: exc.DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def is_unique_violation(error: exc.DBAPIError) -> bool:
    return sqlstate(error) == UNIQUE_VIOLATION or "UNIQUE constraint failed" in str(error.orig)


def is_foreign_key_violation(error: exc.DBAPIError) -> bool:
    return sqlstate(error) == FOREIGN_KEY_VIOLATION or "FOREIGN KEY constraint failed" in str(error.orig)
