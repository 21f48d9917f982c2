"""``/v1/devices``: phones that connected, keyed by ``device_id``; first and last seen widen on each write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import Device
from sonalyze_storage.schemas import DeviceCreate, DeviceFilters, DeviceRead, DeviceUpdate


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
