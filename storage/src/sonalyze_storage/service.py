"""The use cases: five operations every entity shares, each entity described as an `Entity`, and the
devices' batch upsert. Routes (routes.py) only parse, call these and answer.

    list_rows   oldest first (created_at, then id), filters combined with AND, with a total
    get_row     by id, or `NotFound`
    upsert      insert, or update the row with the same natural key
    patch_row   change only the fields given
    delete_row  the row and (by cascade) the rows that depend on it

Each use case commits its own transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_db import is_unique_violation
from sonalyze_protocol.errors import Conflict, NotFound
from sonalyze_storage.models import (
    AnalysisOutput,
    Base,
    Device,
    Lobby,
    Measurement,
    Participant,
    SimulationJob,
    SimulationResult,
)
from sonalyze_storage.schemas import (
    AnalysisOutputCreate,
    AnalysisOutputFilters,
    AnalysisOutputRead,
    AnalysisOutputUpdate,
    CommonFilters,
    DeviceBatch,
    DeviceBatchResult,
    DeviceCreate,
    DeviceFilters,
    DeviceRead,
    DeviceUpdate,
    LobbyCreate,
    LobbyFilters,
    LobbyRead,
    LobbyUpdate,
    MeasurementCreate,
    MeasurementFilters,
    MeasurementRead,
    MeasurementUpdate,
    ParticipantCreate,
    ParticipantFilters,
    ParticipantRead,
    ParticipantUpdate,
    SimulationJobCreate,
    SimulationJobFilters,
    SimulationJobRead,
    SimulationJobUpdate,
    SimulationResultCreate,
    SimulationResultFilters,
    SimulationResultRead,
    SimulationResultUpdate,
)

Prepare = Callable[[AsyncSession, dict[str, Any]], Awaitable[dict[str, Any]]]
Merge = Callable[[Any, dict[str, Any]], None]


@dataclass(frozen=True)
class Entity:
    """What the shared use cases and `routes.crud_router` need to know about one entity.

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


# the five shared operations


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


# devices: phones that connected, keyed by ``device_id``; first and last seen widen on each write


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def widened_window(
    first: datetime | None, last: datetime | None, changes: dict[str, Any]
) -> tuple[datetime | None, datetime | None]:
    """A repeated or late "seen" never narrows the window, so redelivery in any order is harmless."""
    if "first_seen_at" in changes:
        first = _earliest(first, changes["first_seen_at"])
    if "last_seen_at" in changes:
        last = _latest(last, changes["last_seen_at"])
    return first, last


def merge_device(row: Device, changes: dict[str, Any]) -> None:
    """The stored window widened by ``changes`` (`widened_window`); a given meta replaces the stored one."""
    row.first_seen_at, row.last_seen_at = widened_window(row.first_seen_at, row.last_seen_at, changes)
    if changes.get("meta") is not None:
        row.meta = changes["meta"]


def _merge_changes(earlier: dict[str, Any], later: dict[str, Any]) -> None:
    """Two writes of one device in one batch: the wider window, the later meta."""
    if "first_seen_at" in later:
        earlier["first_seen_at"] = _earliest(earlier.get("first_seen_at"), later["first_seen_at"])
    if "last_seen_at" in later:
        earlier["last_seen_at"] = _latest(earlier.get("last_seen_at"), later["last_seen_at"])
    if later.get("meta") is not None:
        earlier["meta"] = later["meta"]


async def upsert_devices(session: AsyncSession, body: DeviceBatch) -> DeviceBatchResult:
    """Each device as `upsert` would store it (the seen window only widens), all in one transaction with
    one lookup; a device listed twice is merged. Idempotent, so safe to redeliver.

    A gateway sends these in connect storms (500 devices at a time), so the rows go through Core
    statements, one executemany each for the new rows, the widened windows and the new meta, rather
    than through ORM objects and the unit of work (75 -> 24 ms of CPU per 500 new devices on SQLite).
    A device whose stored record would not change is not written."""
    merged: dict[str, dict[str, Any]] = {}
    for device in body.devices:
        changes = {name: getattr(device, name) for name in device.model_fields_set if name != "device_id"}
        if device.device_id in merged:
            _merge_changes(merged[device.device_id], changes)
        else:
            merged[device.device_id] = changes
    for attempt in range(2):
        known = (await session.execute(_KNOWN_DEVICES, {"device_ids": list(merged)})).all()
        existing = {row.device_id: row for row in known}
        new_rows = [
            {"device_id": device_id, "first_seen_at": changes.get("first_seen_at"),
             "last_seen_at": changes.get("last_seen_at"), "meta": changes.get("meta") or {}}
            for device_id, changes in merged.items() if device_id not in existing
        ]  # fmt: skip
        windows, metas = _device_updates(existing, merged)
        try:
            if new_rows:
                await session.execute(insert(_DEVICE_TABLE), new_rows)
            if windows:
                await session.execute(_WIDEN_WINDOW, windows)
            if metas:
                await session.execute(_SET_META, metas)
            await session.commit()
        except IntegrityError as exc:  # another request inserted one of them meanwhile: look again
            await session.rollback()
            if attempt == 0 and is_unique_violation(exc):
                continue
            raise
        return DeviceBatchResult(created=len(new_rows), updated=len(existing))
    raise AssertionError("unreachable")  # pragma: no cover


_DEVICE_TABLE: Final = cast(Table, Device.__table__)
_KNOWN_DEVICES: Final = select(
    _DEVICE_TABLE.c.id, _DEVICE_TABLE.c.device_id, _DEVICE_TABLE.c.first_seen_at, _DEVICE_TABLE.c.last_seen_at
).where(_DEVICE_TABLE.c.device_id.in_(bindparam("device_ids", expanding=True)))
_WIDEN_WINDOW: Final = (
    update(_DEVICE_TABLE)
    .where(_DEVICE_TABLE.c.id == bindparam("row_id"))
    .values(first_seen_at=bindparam("first"), last_seen_at=bindparam("last"))
)
_SET_META: Final = (
    update(_DEVICE_TABLE).where(_DEVICE_TABLE.c.id == bindparam("row_id")).values(meta=bindparam("new_meta"))
)


def _device_updates(
    existing: dict[str, Row[Any, Any, Any, Any]], merged: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parameters of the window and meta updates of the known devices whose record changes."""
    windows: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for device_id, row in existing.items():
        changes = merged[device_id]
        first, last = widened_window(row.first_seen_at, row.last_seen_at, changes)
        if (first, last) != (row.first_seen_at, row.last_seen_at):
            windows.append({"row_id": row.id, "first": first, "last": last})
        if changes.get("meta") is not None:
            metas.append({"row_id": row.id, "new_meta": changes["meta"]})
    return windows, metas


# references resolved before a write: a missing parent is a `Conflict`


async def require_lobby(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    """A participant's lobby must be recorded."""
    found = await session.scalar(select(Lobby.id).where(Lobby.lobby_id == data["lobby_id"]))
    if found is None:
        raise Conflict(f"lobby '{data['lobby_id']}' is not recorded (record the lobby first)")
    return data


async def resolve_measurement(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    """An analysis output names its measurement by storage id or by ``(job_id, upload_name)``; both are
    resolved to the row, so the stored output always carries all three."""
    if data.get("measurement_id") is not None:
        measurement = await session.get(Measurement, data["measurement_id"])
        named = f"measurement '{data['measurement_id']}'"
    else:
        query = select(Measurement).where(
            Measurement.job_id == data["job_id"], Measurement.upload_name == data["upload_name"]
        )
        measurement = (await session.scalars(query)).first()
        named = f"measurement of job '{data['job_id']}' upload '{data['upload_name']}'"
    if measurement is None:
        raise Conflict(f"{named} is not recorded (record the measurement first)")
    if data.get("job_id") is not None and (data["job_id"], data["upload_name"]) != (
        measurement.job_id,
        measurement.upload_name,
    ):
        raise Conflict(f"{named} has job_id/upload_name other than the ones given")
    return {**data, "measurement_id": measurement.id, "job_id": measurement.job_id,
            "upload_name": measurement.upload_name}  # fmt: skip


async def require_job(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    """A simulation result's job must be recorded."""
    if await session.get(SimulationJob, data["job_id"]) is None:
        raise Conflict(f"simulation job '{data['job_id']}' is not recorded (record the job first)")
    return data


# the entities, in the order their routes are served

DEVICES = Entity(
    name="device",
    path="devices",
    model=Device,
    create=DeviceCreate,
    update=DeviceUpdate,
    read=DeviceRead,
    filters=DeviceFilters,
    natural_key=("device_id",),
    merge=merge_device,
)
# one row per lobby the lobby service ran, keyed by that service's ``lobby_id``
LOBBIES = Entity(
    name="lobby",
    path="lobbies",
    model=Lobby,
    create=LobbyCreate,
    update=LobbyUpdate,
    read=LobbyRead,
    filters=LobbyFilters,
    natural_key=("lobby_id",),
)
# a device in a lobby, keyed by ``(lobby_id, device_id)``; the lobby must exist
PARTICIPANTS = Entity(
    name="participant",
    path="participants",
    model=Participant,
    create=ParticipantCreate,
    update=ParticipantUpdate,
    read=ParticipantRead,
    filters=ParticipantFilters,
    natural_key=("lobby_id", "device_id"),
    prepare=require_lobby,
)
# one row per uploaded recording, keyed by ``(job_id, upload_name)``
MEASUREMENTS = Entity(
    name="measurement",
    path="measurements",
    model=Measurement,
    create=MeasurementCreate,
    update=MeasurementUpdate,
    read=MeasurementRead,
    filters=MeasurementFilters,
    natural_key=("job_id", "upload_name"),
)
# one analysis run of one measurement, keyed by ``(measurement, analysis_run)``
ANALYSIS_OUTPUTS = Entity(
    name="analysis output",
    path="analysis-outputs",
    model=AnalysisOutput,
    create=AnalysisOutputCreate,
    update=AnalysisOutputUpdate,
    read=AnalysisOutputRead,
    filters=AnalysisOutputFilters,
    natural_key=("measurement_id", "analysis_run"),
    prepare=resolve_measurement,
)
# one simulation request, keyed by its client-supplied ``id`` (made when absent)
SIMULATION_JOBS = Entity(
    name="simulation job",
    path="simulation-jobs",
    model=SimulationJob,
    create=SimulationJobCreate,
    update=SimulationJobUpdate,
    read=SimulationJobRead,
    filters=SimulationJobFilters,
    natural_key=("id",),
)
# results of a simulation job, keyed by a client-supplied ``id``; the job must exist
SIMULATION_RESULTS = Entity(
    name="simulation result",
    path="simulation-results",
    model=SimulationResult,
    create=SimulationResultCreate,
    update=SimulationResultUpdate,
    read=SimulationResultRead,
    filters=SimulationResultFilters,
    natural_key=("id",),
    prepare=require_job,
)

ENTITIES: tuple[Entity, ...] = (
    DEVICES,
    LOBBIES,
    PARTICIPANTS,
    MEASUREMENTS,
    ANALYSIS_OUTPUTS,
    SIMULATION_JOBS,
    SIMULATION_RESULTS,
)
