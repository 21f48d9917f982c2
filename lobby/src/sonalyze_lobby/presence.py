"""Device presence: the gateway's connected/disconnected notices, applied in batches.

The gateway sends ``device.presence`` with the notices gathered while its previous batch was on the
way, in order (a lone notice goes out at once; a connect storm of 1000 phones becomes a few batches).
A batch is one write transaction: one upsert of the devices' presence rows and one query for the open
lobbies they are joined in. Devices in no lobby (nearly all of a storm) cost nothing more. Each lobby
whose participants changed then gets its own short transaction and its ``lobby.updated`` pushes, and
the measurement coordinator hears every notice in order (a phone that dropped and came back within
one batch still interrupted its session's step).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Final

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.models import (
    DevicePresence,
    Lobby,
    LobbyState,
    Participant,
    ParticipantStatus,
    utcnow,
)
from sonalyze_lobby.service import Change, get_lobby, record
from sonalyze_protocol.ids import DeviceId

# the gateway sends at most 500 notices a batch; an upsert of 1000 rows binds 3000 parameters,
# well inside SQLite's (32766) and asyncpg's (32767) limits
PRESENCE_BATCH_MAX: Final = 1000


class PresenceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    connected: bool


class PresenceBatch(BaseModel):
    """``device.presence``: notices in the order the gateway saw them (one device may appear twice)."""

    model_config = ConfigDict(extra="forbid")

    changes: list[PresenceChange] = Field(min_length=1, max_length=PRESENCE_BATCH_MAX)


async def apply_presence(ctx: LobbyContext, changes: list[PresenceChange]) -> list[uuid.UUID]:
    """Store the last notice of each device, update the lobbies they are joined in, tell the coordinator.

    Returns the ids of the lobbies whose view changed. Each lobby copies the stored presence, not the
    notice, so notices racing one another (or a join) converge on the last one stored.
    """
    last = {change.device_id: change.connected for change in changes}
    await _upsert_presence(ctx.session, last)
    query = (
        select(Participant.lobby_id, Participant.device_id)
        .join(Lobby, Lobby.id == Participant.lobby_id)
        .where(
            Participant.device_id.in_(list(last)),
            Participant.status == ParticipantStatus.JOINED,
            Lobby.state != LobbyState.CLOSED,
        )
    )
    devices_by_lobby: dict[uuid.UUID, list[str]] = defaultdict(list)
    for lobby_id, device_id in (await ctx.session.execute(query)).all():
        devices_by_lobby[lobby_id].append(device_id)
    await ctx.session.commit()
    changed = [
        lobby_id for lobby_id, device_ids in devices_by_lobby.items() if await _update_lobby(ctx, lobby_id, device_ids)
    ]
    if ctx.coordinator is not None:
        for change in changes:
            await ctx.coordinator.device_connection_changed(change.device_id, change.connected)
    return changed


async def set_connected(ctx: LobbyContext, connected: bool) -> list[uuid.UUID]:
    """One notice about the caller's own device (``device.connected`` / ``device.disconnected``)."""
    return await apply_presence(ctx, [PresenceChange(device_id=ctx.device_id, connected=connected)])


async def _upsert_presence(session: AsyncSession, connected_by_device: dict[str, bool]) -> None:
    """One statement for every device; rows locked (PostgreSQL) in device order until the commit."""
    now = utcnow()
    rows = [{"device_id": d, "connected": c, "changed_at": now} for d, c in sorted(connected_by_device.items())]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(DevicePresence).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[DevicePresence.device_id],
        set_={"connected": statement.excluded.connected, "changed_at": statement.excluded.changed_at},
    )
    await session.execute(statement)


async def _update_lobby(ctx: LobbyContext, lobby_id: uuid.UUID, device_ids: list[str]) -> bool:
    """Copy the stored presence of ``device_ids`` onto their participants in one lobby; True if any changed."""
    session = ctx.session
    lobby = await get_lobby(session, lobby_id, for_update=True)
    query = select(DevicePresence.device_id, DevicePresence.connected).where(DevicePresence.device_id.in_(device_ids))
    stored: dict[str, bool] = {row.device_id: row.connected for row in (await session.execute(query)).all()}
    updated: list[str] = []
    for device_id in device_ids:
        participant = lobby.participant(device_id)
        now_connected = stored.get(device_id, True)
        if (
            lobby.state is LobbyState.CLOSED
            or participant is None
            or participant.status is not ParticipantStatus.JOINED
            or participant.connected == now_connected
        ):
            continue
        participant.connected = now_connected
        record(session, lobby, Change.CONNECTION_CHANGED, device_id, connected=now_connected)
        updated.append(device_id)
    await session.commit()
    for device_id in updated:
        await ctx.broadcaster.lobby_updated(lobby, Change.CONNECTION_CHANGED, device_id)
    return bool(updated)
