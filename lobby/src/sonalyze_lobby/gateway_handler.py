"""The lobby's gateway events as one table, merged with the measurement protocol's (``/gateway/handle``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import Request

from sonalyze_db import guard_handlers
from sonalyze_lobby import presence, service
from sonalyze_lobby.context import LobbyContext, lobby_app
from sonalyze_lobby.measurement_handlers import MEASUREMENT_HANDLERS
from sonalyze_lobby.presence import PresenceBatch
from sonalyze_lobby.replicas import route_to_owner
from sonalyze_lobby.schemas import (
    LobbyCreate,
    LobbyGet,
    LobbyJoin,
    LobbyRef,
    LobbySummary,
    LobbyView,
    ProfileUpdate,
    RoleAssign,
    RoomSnapshotShare,
    StepUpdate,
)
from sonalyze_protocol.errors import BadRequest
from sonalyze_protocol.handlers import EmptyData, GatewayRequest, Handler, HandlerTable
from sonalyze_protocol.ids import DEVICE_ID_RULE, is_device_id

# events that never write: their session comes from the read engine (on SQLite: never behind a writer)
READ_ONLY_EVENTS: Final = frozenset({"lobby.get", "measurement.session_status"})


@asynccontextmanager
async def lobby_context(request: Request, body: GatewayRequest) -> AsyncIterator[LobbyContext]:
    """One session per event; closed here, committed (or not) by the service."""
    device_id = body.device_id
    if not is_device_id(device_id):
        raise BadRequest(f"device_id must be {DEVICE_ID_RULE}")
    async with lobby_app(request).context(device_id, body.request_id, read_only=body.event in READ_ONLY_EVENTS) as ctx:
        yield ctx


async def create(ctx: LobbyContext, _: LobbyCreate) -> LobbyView:
    return await service.create_lobby(ctx)


async def join(ctx: LobbyContext, data: LobbyJoin) -> LobbyView:
    return await service.join_lobby(ctx, data.code)


async def leave(ctx: LobbyContext, data: LobbyRef) -> LobbyView:
    return await service.leave_lobby(ctx, data.lobby_id)


async def get(ctx: LobbyContext, data: LobbyGet) -> LobbyView | LobbySummary:
    return await service.get_lobby_view(ctx, data)


async def start(ctx: LobbyContext, data: LobbyRef) -> LobbyView:
    return await service.start_lobby(ctx, data.lobby_id)


async def room_snapshot(ctx: LobbyContext, data: RoomSnapshotShare) -> LobbyView:
    return await service.share_room_snapshot(ctx, data)


async def step_update(ctx: LobbyContext, data: StepUpdate) -> LobbyView:
    return await service.update_step(ctx, data)


async def profile_update(ctx: LobbyContext, data: ProfileUpdate) -> LobbyView:
    return await service.update_profile(ctx, data)


async def assign_role(ctx: LobbyContext, data: RoleAssign) -> LobbyView:
    return await service.assign_role(ctx, data)


async def _connection_changed(ctx: LobbyContext, connected: bool) -> dict[str, Any]:
    lobby_ids = await presence.set_connected(ctx, connected)
    return {"connected": connected, "lobby_ids": [str(i) for i in lobby_ids]}


async def device_connected(ctx: LobbyContext, _: EmptyData) -> dict[str, Any]:
    return await _connection_changed(ctx, True)


async def device_disconnected(ctx: LobbyContext, _: EmptyData) -> dict[str, Any]:
    return await _connection_changed(ctx, False)


async def device_presence(ctx: LobbyContext, data: PresenceBatch) -> dict[str, Any]:
    """The gateway's batch of notices (its ``device_id`` is the sender's, not one of the devices)."""
    lobby_ids = await presence.apply_presence(ctx, data.changes)
    return {"applied": len(data.changes), "lobby_ids": [str(i) for i in lobby_ids]}


LOBBY_HANDLERS: dict[str, Handler[LobbyContext, Any]] = {
    "lobby.create": Handler(LobbyCreate, create),
    "lobby.join": Handler(LobbyJoin, join),
    "lobby.leave": Handler(LobbyRef, leave),
    "lobby.get": Handler(LobbyGet, get),
    "lobby.start": Handler(LobbyRef, start),
    "lobby.room_snapshot": Handler(RoomSnapshotShare, room_snapshot),
    "lobby.step_update": Handler(StepUpdate, step_update),
    "lobby.profile_update": Handler(ProfileUpdate, profile_update),
    "role.assign": Handler(RoleAssign, assign_role),
    "device.connected": Handler(EmptyData, device_connected),
    "device.disconnected": Handler(EmptyData, device_disconnected),
    "device.presence": Handler(PresenceBatch, device_presence),
}

# a database outage in any handler, ``measurement.*`` included, answers service_unavailable; an event naming a
# session another lobby replica drives goes to that replica (`replicas`)
HANDLERS: HandlerTable[LobbyContext] = HandlerTable(
    guard_handlers({**LOBBY_HANDLERS, **route_to_owner(MEASUREMENT_HANDLERS)})
)
