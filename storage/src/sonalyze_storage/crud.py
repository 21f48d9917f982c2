"""The five operations every entity shares, and the router that serves them.

Each ``routers/<entity>.py`` describes its entity as an `Entity` (table, schemas, natural key, hooks);
`crud_router` turns that into list / get / POST (upsert on the natural key) / PATCH / DELETE.
(No ``from __future__ import annotations`` here: FastAPI must see the entity's real types.)
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_protocol.errors import NotFound
from sonalyze_storage.http_errors import CONFLICT_RESPONSES, is_unique_violation
from sonalyze_storage.models import Base
from sonalyze_storage.schemas import CommonFilters, Page, RecordId

Prepare = Callable[[AsyncSession, dict[str, Any]], Awaitable[dict[str, Any]]]
Merge = Callable[[Any, dict[str, Any]], None]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True)
class Entity:
    """What `crud_router` needs to know about one entity.

    ``natural_key`` lists the columns whose values identify a record across retries; a POST whose
    values match an existing row updates it. ``prepare`` resolves references before a write (and
    raises `Conflict` for a missing parent); ``merge`` replaces the plain field-by-field update.
    """

    name: str
    path: str
    model: type[Base]
    create: type[BaseModel]
    update: type[BaseModel]
    read: type[BaseModel]
    filters: type[CommonFilters]
    natural_key: tuple[str, ...]
    prepare: Prepare | None = None
    merge: Merge | None = None
    filter_columns: dict[str, Callable[[Any], ColumnElement[bool]]] = field(default_factory=dict)


def _where(entity: Entity, filters: CommonFilters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    model = entity.model
    for name, value in filters.model_dump(exclude={"limit", "offset"}, exclude_none=True).items():
        if name == "created_after":
            clauses.append(model.created_at > getattr(filters, name))  # type: ignore[attr-defined]
        elif name in entity.filter_columns:
            clauses.append(entity.filter_columns[name](value))
        else:
            clauses.append(getattr(model, name) == value)
    return clauses


async def list_rows(session: AsyncSession, entity: Entity, filters: CommonFilters) -> tuple[list[Any], int]:
    model: Any = entity.model
    clauses = _where(entity, filters)
    total = await session.scalar(select(func.count()).select_from(model).where(*clauses))
    query = select(model).where(*clauses).order_by(model.created_at, model.id).limit(filters.limit)
    rows = (await session.scalars(query.offset(filters.offset))).all()
    return list(rows), int(total or 0)


async def get_row(session: AsyncSession, entity: Entity, record_id: str) -> Any:
    row = await session.get(entity.model, record_id)
    if row is None:
        raise NotFound(f"{entity.name} '{record_id}' not found")
    return row


async def _find_by_key(session: AsyncSession, entity: Entity, data: dict[str, Any]) -> Any:
    values = {name: data.get(name) for name in entity.natural_key}
    if not values or any(value is None for value in values.values()):
        return None
    model: Any = entity.model
    query = select(model).where(*(getattr(model, name) == value for name, value in values.items()))
    return (await session.scalars(query)).first()


def _apply(row: Any, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setattr(row, name, value)


async def upsert(session: AsyncSession, entity: Entity, body: BaseModel) -> tuple[Any, bool]:
    """Insert, or update the row with the same natural key; returns ``(row, created)``.

    Two racing inserts of one key: the loser's unique violation sends it round again to update.
    """
    data = body.model_dump()
    given = body.model_fields_set
    if entity.prepare is not None:
        data = await entity.prepare(session, data)
        given = given | (data.keys() - type(body).model_fields.keys())
    for attempt in range(2):
        row = await _find_by_key(session, entity, data)
        if row is not None:
            changes = {name: data[name] for name in given if name not in entity.natural_key}
            (entity.merge or _apply)(row, changes)
            await session.commit()
            return row, False
        row = entity.model(**{k: v for k, v in data.items() if v is not None or k in given})
        session.add(row)
        try:
            await session.commit()
        except IntegrityError as exc:
            await session.rollback()
            if attempt == 0 and is_unique_violation(exc):
                continue
            raise
        return row, True
    raise AssertionError("unreachable")  # pragma: no cover


async def patch_row(session: AsyncSession, entity: Entity, record_id: str, body: BaseModel) -> Any:
    row = await get_row(session, entity, record_id)
    _apply(row, body.model_dump(exclude_unset=True))
    await session.commit()
    return row


async def delete_row(session: AsyncSession, entity: Entity, record_id: str) -> None:
    row = await get_row(session, entity, record_id)
    await session.delete(row)
    await session.commit()


def crud_router(entity: Entity) -> APIRouter:
    """list, get, POST (upsert), PATCH and DELETE for one entity under ``/v1/<path>``."""
    router = APIRouter(prefix=f"/v1/{entity.path}", tags=[entity.path])
    Read, Create, Update, Filters = entity.read, entity.create, entity.update, entity.filters
    IdParam = Annotated[RecordId, Path(description=f"the {entity.name}'s id")]
    key_text = " + ".join(entity.natural_key)

    @router.get("", response_model=Page[Read], summary=f"List {entity.path}")
    async def list_entities(session: SessionDep, filters: Annotated[Filters, Query()]) -> Any:
        """Oldest first (created_at, then id); filters combine with AND."""
        rows, total = await list_rows(session, entity, filters)
        return {"items": rows, "total": total, "limit": filters.limit, "offset": filters.offset}

    @router.get("/{record_id}", response_model=Read, responses={404: {}}, summary=f"Get one {entity.name}")
    async def get_entity(session: SessionDep, record_id: IdParam) -> Any:
        """The record with this id, or 404."""
        return await get_row(session, entity, record_id)

    @router.post(
        "",
        response_model=Read,
        status_code=status.HTTP_201_CREATED,
        responses={200: {"description": "updated the record with the same key"}, **CONFLICT_RESPONSES},
        summary=f"Create or update a {entity.name}",
        description=f"Upsert on {key_text}: 201 when new, 200 when it updated the existing record.",
    )
    async def post_entity(session: SessionDep, body: Create, response: Response) -> Any:  # type: ignore[valid-type]
        row, created = await upsert(session, entity, body)
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
        return await patch_row(session, entity, record_id, body)

    @router.delete(
        "/{record_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}}, summary=f"Delete a {entity.name}"
    )
    async def delete_entity(session: SessionDep, record_id: IdParam) -> Response:
        """Delete the record and the records that depend on it."""
        await delete_row(session, entity, record_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
