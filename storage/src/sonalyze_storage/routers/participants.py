"""``/v1/participants``: a device in a lobby, keyed by ``(lobby_id, device_id)``; the lobby must exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_protocol.errors import Conflict
from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import Lobby, Participant
from sonalyze_storage.schemas import ParticipantCreate, ParticipantFilters, ParticipantRead, ParticipantUpdate


async def require_lobby(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    found = await session.scalar(select(Lobby.id).where(Lobby.lobby_id == data["lobby_id"]))
    if found is None:
        raise Conflict(f"lobby '{data['lobby_id']}' is not recorded (record the lobby first)")
    return data


ENTITY = Entity(
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

router = crud_router(ENTITY)
