"""HTTP endpoints of the lobby; the caller's device is named in ``X-Device-Id``, the same rules as the events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyContext, lobby_app
from sonalyze_lobby.schemas import (
    EventPage,
    LobbyGet,
    LobbyJoin,
    LobbySummary,
    LobbyView,
    RoleAssign,
    RoleAssignBody,
    RoomSnapshotBody,
    RoomSnapshotShare,
)
from sonalyze_protocol.auth import require_internal_token, settings_token
from sonalyze_protocol.ids import DEVICE_ID_MAX_CHARS, DEVICE_ID_PATTERN
from sonalyze_protocol.logs import request_id_var

DeviceIdHeader = Annotated[
    str,
    Header(
        alias="X-Device-Id",
        min_length=1,
        max_length=DEVICE_ID_MAX_CHARS,
        pattern=DEVICE_ID_PATTERN,
        description="The device acting (as the gateway would name it)",
    ),
]


async def get_context(request: Request, device_id: DeviceIdHeader) -> AsyncIterator[LobbyContext]:
    """A `LobbyContext` for one HTTP request; the session closes after the response, the service commits."""
    # a GET only reads: its session comes from the read engine (on SQLite: never behind a writer)
    async with lobby_app(request).context(device_id, request_id_var.get(), read_only=request.method == "GET") as ctx:
        yield ctx


ContextDep = Annotated[LobbyContext, Depends(get_context)]

router = APIRouter(
    prefix="/lobbies",
    tags=["lobbies"],
    dependencies=[Depends(require_internal_token(settings_token))],
)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_lobby(ctx: ContextDep) -> LobbyView:
    """Create a lobby; the caller becomes its admin and first participant."""
    return await service.create_lobby(ctx)


@router.post("/join")
async def join_lobby(ctx: ContextDep, body: LobbyJoin) -> LobbyView:
    """Join by code (any case, spaces around ignored); joining again changes nothing."""
    return await service.join_lobby(ctx, body.code)


@router.get("/by-code/{code}")
async def get_lobby_by_code(ctx: ContextDep, code: str) -> LobbyView | LobbySummary:
    """The open (or running) lobby with this code."""
    return await service.get_lobby_view(ctx, LobbyGet(code=code))


@router.get("/{lobby_id}")
async def get_lobby(ctx: ContextDep, lobby_id: uuid.UUID) -> LobbyView | LobbySummary:
    """The lobby and its participants."""
    return await service.get_lobby_view(ctx, LobbyGet(lobby_id=lobby_id))


@router.post("/{lobby_id}/leave")
async def leave_lobby(ctx: ContextDep, lobby_id: uuid.UUID) -> LobbyView:
    """Leave; when the admin or the last participant leaves, the lobby closes."""
    return await service.leave_lobby(ctx, lobby_id)


@router.post("/{lobby_id}/roles")
async def assign_role(ctx: ContextDep, lobby_id: uuid.UUID, body: RoleAssignBody) -> LobbyView:
    """Admin only: give a joined participant a role and optionally a slot."""
    return await service.assign_role(ctx, RoleAssign(lobby_id=lobby_id, **body.model_dump()))


@router.post("/{lobby_id}/start")
async def start_lobby(ctx: ContextDep, lobby_id: uuid.UUID) -> LobbyView:
    """Admin only: move the lobby from open to measurement_running."""
    return await service.start_lobby(ctx, lobby_id)


@router.post("/{lobby_id}/room_snapshot")
async def share_room_snapshot(ctx: ContextDep, lobby_id: uuid.UUID, body: RoomSnapshotBody) -> LobbyView:
    """A joined participant shares the room configuration with the others."""
    return await service.share_room_snapshot(ctx, RoomSnapshotShare(lobby_id=lobby_id, room=body.room))


@router.get("/{lobby_id}/events")
async def list_events(
    ctx: ContextDep,
    lobby_id: uuid.UUID,
    after: Annotated[int, Query(ge=0, description="Return events with ids above this one")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """The lobby's change log after ``after``, ascending: the polling fallback when pushes were missed."""
    return await service.list_events(ctx, lobby_id, after, limit)
