"""``/v1/devices``: phones that connected, keyed by ``device_id``; first and last seen widen on each write.

``POST /v1/devices/bulk`` upserts many at once in one transaction: what a connect storm costs storage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sonalyze_storage.crud import CONFLICT_RESPONSES, Entity, SessionDep, crud_router
from sonalyze_storage.http_errors import is_unique_violation
from sonalyze_storage.models import Device
from sonalyze_storage.schemas import (
    DeviceBatch,
    DeviceBatchResult,
    DeviceCreate,
    DeviceFilters,
    DeviceRead,
    DeviceUpdate,
)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def merge_device(row: Device, changes: dict[str, Any]) -> None:
    """A repeated or late "seen" never narrows the window, so redelivery in any order is harmless."""
    if "first_seen_at" in changes:
        row.first_seen_at = _earliest(row.first_seen_at, changes["first_seen_at"])
    if "last_seen_at" in changes:
        row.last_seen_at = _latest(row.last_seen_at, changes["last_seen_at"])
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


ENTITY = Entity(
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

router = crud_router(ENTITY)


@router.post(
    "/bulk",
    response_model=DeviceBatchResult,
    status_code=status.HTTP_200_OK,
    responses=CONFLICT_RESPONSES,
    summary="Create or update many devices",
)
async def post_devices_bulk(session: SessionDep, body: DeviceBatch) -> DeviceBatchResult:
    """Each device as ``POST /v1/devices`` would store it (the seen window only widens), all in one
    transaction with one lookup; a device listed twice is merged. Idempotent, so safe to redeliver."""
    merged: dict[str, dict[str, Any]] = {}
    for device in body.devices:
        changes = {name: getattr(device, name) for name in device.model_fields_set if name != "device_id"}
        if device.device_id in merged:
            _merge_changes(merged[device.device_id], changes)
        else:
            merged[device.device_id] = changes
    for attempt in range(2):
        query = select(Device).where(Device.device_id.in_(merged))
        existing = {row.device_id: row for row in (await session.scalars(query)).all()}
        for device_id, changes in merged.items():
            row = existing.get(device_id)
            if row is not None:
                merge_device(row, changes)
            else:
                session.add(Device(device_id=device_id, **{k: v for k, v in changes.items() if v is not None}))
        try:
            await session.commit()
        except IntegrityError as exc:  # another request inserted one of them meanwhile: look again
            await session.rollback()
            if attempt == 0 and is_unique_violation(exc):
                continue
            raise
        return DeviceBatchResult(created=len(merged) - len(existing), updated=len(existing))
    raise AssertionError("unreachable")  # pragma: no cover
