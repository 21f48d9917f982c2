"""Database errors as the suite's error codes, so no driver error ever reaches a client as a 500.

    IntegrityError  unique violation        -> conflict 409
                    foreign-key violation   -> conflict 409
                    anything else           -> bad_request 422
    DataError, SQLSTATE class 22 (a value the column refuses) -> bad_request 422
    other DBAPIError, OSError, pool timeout -> service_unavailable 503

Both drivers are recognised: asyncpg by SQLSTATE (23505, 23503), SQLite by its message text.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sonalyze_protocol.errors import AppError, BadRequest, Conflict, ServiceUnavailable

logger = logging.getLogger("sonalyze.storage.errors")

UNIQUE_VIOLATION: Final = "23505"
FOREIGN_KEY_VIOLATION: Final = "23503"

ERROR_BODY: Final = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["code", "message"],
                    }
                },
                "required": ["error"],
            }
        }
    }
}
CONFLICT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    409: {"description": "duplicate natural key or missing parent record", **ERROR_BODY}
}


class Unprocessable(BadRequest):
    """bad_request answered with 422, like FastAPI's own validation errors."""

    @property
    def http_status(self) -> int:
        return 422


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def is_unique_violation(exc: DBAPIError) -> bool:
    return _sqlstate(exc) == UNIQUE_VIOLATION or "UNIQUE constraint failed" in str(exc.orig)


def is_foreign_key_violation(exc: DBAPIError) -> bool:
    return _sqlstate(exc) == FOREIGN_KEY_VIOLATION or "FOREIGN KEY constraint failed" in str(exc.orig)


def app_error_for(exc: Exception) -> AppError:
    """The client-facing error for a database exception."""
    if isinstance(exc, IntegrityError):
        if is_unique_violation(exc):
            return Conflict("a record with the same natural key already exists")
        if is_foreign_key_violation(exc):
            return Conflict("the record refers to a parent record that does not exist")
        return Unprocessable(f"the database refused the values: {str(exc.orig).splitlines()[0][:200]}")
    if isinstance(exc, DataError) or (isinstance(exc, DBAPIError) and (_sqlstate(exc) or "").startswith("22")):
        return Unprocessable(f"the database refused a value: {str(exc.orig).splitlines()[0][:200]}")
    return ServiceUnavailable("the database is not reachable right now")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    error = app_error_for(exc)
    if isinstance(error, ServiceUnavailable):
        logger.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error.to_body(), status_code=error.http_status)


def install_database_error_handlers(app: FastAPI) -> None:
    for exc_type in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(exc_type, _database_error)
