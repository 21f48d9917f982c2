"""FastAPI exception handlers: every HTTP error answers ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sonalyze_protocol.errors import AppError, ErrorCode, client_text, clip, code_for_status
from sonalyze_protocol.handlers import describe_validation_error

logger = logging.getLogger("sonalyze.http")


def error_response(status_code: int, code: ErrorCode | str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": {"code": str(code), "message": message, **extra}}, status_code=status_code)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(exc.to_body(), status_code=exc.http_status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        loc = ".".join(clip(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    details = [
        {"loc": [clip(p) if isinstance(p, str) else p for p in e.get("loc", ())], "msg": client_text(str(e.get("msg"))),
         "type": e.get("type")}
        for e in errors[:20]
    ]  # fmt: skip
    message = client_text("; ".join(parts) or "invalid request")
    return error_response(422, ErrorCode.BAD_REQUEST, message, details=details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = client_text(exc.detail) if isinstance(exc.detail, str) else "request failed"
    return JSONResponse(
        {"error": {"code": code_for_status(exc.status_code).value, "message": message}},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)


__all__ = ["describe_validation_error", "error_response", "install_error_handlers"]
