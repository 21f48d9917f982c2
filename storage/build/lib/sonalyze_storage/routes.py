"""HTTP: one router per entity built by `crud_router` from its `service.Entity`, the devices' batch
endpoint, and database errors as the suite's error codes.

    IntegrityError  unique violation        -> conflict 409
                    foreign-key violation   -> conflict 409
                    anything else           -> bad_request 422
    DataError, SQLSTATE class 22 (a value the column refuses) -> bad_request 422
    other DBAPIError, OSError, pool timeout -> service_unavailable 503 (`sonalyze_db.database_unavailable`)

so no driver error ever reaches a client as a 500.
(No ``from __future__ import annotations`` here: FastAPI must see the entity's real types.)
"""

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_db import database_unavailable, is_foreign_key_violation, is_unique_violation
from sonalyze_db.errors import sqlstate
from sonalyze_protocol.errors import AppError, BadRequest, Conflict, ServiceUnavailable
from sonalyze_storage import service
from sonalyze_storage.schemas import DeviceBatch, DeviceBatchResult, Page, RecordId
from sonalyze_storage.service import Entity

logger = logging.getLogger("sonalyze.storage.errors")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; a GET only reads, so its session comes from the read engine (on a SQLite
    file: never behind a writer). It only closes here: each use case commits its own work."""
    database = request.app.state.database
    sessionmaker = database.read_sessionmaker if request.method == "GET" else database.sessionmaker
    async with sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

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


def crud_router(entity: Entity) -> APIRouter:
    """list, get, POST (upsert), PATCH and DELETE for one entity under ``/v1/<path>``."""
    router = APIRouter(prefix=f"/v1/{entity.path}", tags=[entity.path])
    Read, Create, Update, Filters = entity.read, entity.create, entity.update, entity.filters
    IdParam = Annotated[RecordId, Path(description=f"the {entity.name}'s id")]
    key_text = " + ".join(entity.natural_key)

    @router.get("", response_model=Page[Read], summary=f"List {entity.path}")  # type: ignore[valid-type]
    async def list_entities(session: SessionDep, filters: Annotated[Filters, Query()]) -> Any:  # type: ignore[valid-type]
        """Oldest first (created_at, then id); filters combine with AND."""
        rows, total = await service.list_rows(session, entity, filters)
        return {"items": rows, "total": total, "limit": filters.limit, "offset": filters.offset}  # type: ignore[attr-defined]

    @router.get("/{record_id}", response_model=Read, responses={404: {}}, summary=f"Get one {entity.name}")
    async def get_entity(session: SessionDep, record_id: IdParam) -> Any:
        """The record with this id, or 404."""
        return await service.get_row(session, entity, record_id)

    @router.post(
        "",
        response_model=Read,
        status_code=status.HTTP_201_CREATED,
        responses={200: {"description": "updated the record with the same key"}, **CONFLICT_RESPONSES},
        summary=f"Create or update a {entity.name}",
        description=f"Upsert on {key_text}: 201 when new, 200 when it updated the existing record.",
    )
    async def post_entity(session: SessionDep, body: Create, response: Response) -> Any:  # type: ignore[valid-type]
        row, created = await service.upsert(session, entity, body)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return row

    @router.patch(
        "/{record_id}",
        response_model=Read,
        responses={404: {}, **CONFLICT_RESPONSES},
        summary=f"Update a {entity.name}",
    )
    async def patch_entity(session: SessionDep, record_id: IdParam, body: Update) -> Any:  # type: ignore[valid-type]
        """Change only the fields given; 409 if the change collides with another record's key."""
        return await service.patch_row(session, entity, record_id, body)

    @router.delete(
        "/{record_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}}, summary=f"Delete a {entity.name}"
    )
    async def delete_entity(session: SessionDep, record_id: IdParam) -> Response:
        """Delete the record and the records that depend on it."""
        await service.delete_row(session, entity, record_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


devices = crud_router(service.DEVICES)


@devices.post(
    "/bulk",
    response_model=DeviceBatchResult,
    status_code=status.HTTP_200_OK,
    responses=CONFLICT_RESPONSES,
    summary="Create or update many devices",
)
async def post_devices_bulk(session: SessionDep, body: DeviceBatch) -> DeviceBatchResult:
    """Each device as ``POST /v1/devices`` would store it (the seen window only widens), all in one
    transaction with one lookup; a device listed twice is merged. Idempotent, so safe to redeliver."""
    return await service.upsert_devices(session, body)


ROUTERS: Final[tuple[APIRouter, ...]] = (
    devices,
    *(crud_router(entity) for entity in service.ENTITIES if entity is not service.DEVICES),
)


# database errors


class Unprocessable(BadRequest):
    """bad_request answered with 422, like FastAPI's own validation errors."""

    @property
    def http_status(self) -> int:
        return 422


def app_error_for(exc: Exception) -> AppError:
    """The client-facing error for a database exception."""
    if isinstance(exc, IntegrityError):
        if is_unique_violation(exc):
            return Conflict("a record with the same natural key already exists")
        if is_foreign_key_violation(exc):
            return Conflict("the record refers to a parent record that does not exist")
        return Unprocessable(f"the database refused the values: {str(exc.orig).splitlines()[0][:200]}")
    if isinstance(exc, DataError) or (isinstance(exc, DBAPIError) and (sqlstate(exc) or "").startswith("22")):
        return Unprocessable(f"the database refused a value: {str(exc.orig).splitlines()[0][:200]}")
    return database_unavailable(exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    error = app_error_for(exc)
    if isinstance(error, ServiceUnavailable):
        logger.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error.to_body(), status_code=error.http_status)


def install_database_error_handlers(app: FastAPI) -> None:
    for exc_type in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(exc_type, _database_error)
