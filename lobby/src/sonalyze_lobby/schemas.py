"""Pydantic models at the lobby's boundary: event/HTTP inputs, the room snapshot and the one lobby view."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from sonalyze_lobby.models import (
    LABEL_MAX_CHARS,
    Lobby,
    LobbyEvent,
    LobbyState,
    Participant,
    ParticipantStatus,
    Role,
)
from sonalyze_protocol.ids import DeviceId

MAX_VERTICES: Final = 256
MAX_POSITIONS: Final = 64
MAX_COORDINATE_M: Final = 10_000.0
# slot ids end up in upload names (``<speaker>__<mic>.wav``), so they are plain and short
SLOT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
SLOT_ID_MAX_CHARS: Final = 47
MAX_HEIGHT_M: Final = 1_000.0

SlotId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SLOT_ID_MAX_CHARS, pattern=SLOT_ID_PATTERN),
]
SlotLabel = Annotated[str, StringConstraints(strip_whitespace=True, max_length=LABEL_MAX_CHARS)]
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE_M, le=MAX_COORDINATE_M)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- inputs -------------------------------------------------------------------------------------


class LobbyCreate(_Input):
    """``lobby.create`` takes no data: the caller becomes the admin."""


class LobbyJoin(_Input):
    code: Annotated[str, StringConstraints(min_length=1, max_length=32)]


class LobbyRef(_Input):
    lobby_id: uuid.UUID


class LobbyGet(_Input):
    """By id or by code, exactly one of them."""

    lobby_id: uuid.UUID | None = None
    code: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LobbyGet:
        if (self.lobby_id is None) == (self.code is None):
            raise ValueError("give exactly one of lobby_id or code")
        return self


class RoleAssignBody(_Input):
    """``POST /lobbies/{lobby_id}/roles``: the lobby comes from the path."""

    target_device_id: DeviceId
    role: Role
    role_slot_id: SlotId | None = None
    role_slot_label: SlotLabel | None = None


class RoleAssign(RoleAssignBody):
    lobby_id: uuid.UUID


class Position(BaseModel):
    """Where a speaker or microphone stands, tied to its role slot."""

    model_config = ConfigDict(extra="allow")
    slot_id: SlotId
    position_m: Annotated[list[Coordinate], Field(min_length=2, max_length=3)]


class Room(BaseModel):
    """The ``map.room`` shape: a floor polygon in metres and a height; materials and positions optional.

    Unknown keys are kept as sent (the whole snapshot is size-capped by the service).
    """

    model_config = ConfigDict(extra="allow")
    vertices: Annotated[
        list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]],
        Field(min_length=3, max_length=MAX_VERTICES),
    ]
    height_m: Annotated[float, Field(gt=0, le=MAX_HEIGHT_M, allow_inf_nan=False)]
    materials: dict[str, Any] | None = None
    positions: Annotated[list[Position], Field(max_length=MAX_POSITIONS)] | None = None

    @field_validator("vertices")
    @classmethod
    def _non_degenerate(cls, vertices: list[list[float]]) -> list[list[float]]:
        if polygon_area_m2(vertices) <= 1e-9:
            raise ValueError("vertices must span a polygon with a non-zero area")
        return vertices


def polygon_area_m2(vertices: list[list[float]]) -> float:
    """Shoelace formula: the absolute area of a simple polygon given as [[x, y], ...] in metres."""
    twice_area = 0.0
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        twice_area += x0 * y1 - x1 * y0
    return abs(twice_area) / 2.0 if math.isfinite(twice_area) else 0.0


# keys that mark a snapshot as our own ``map.room`` shape (then checked as `Room`); any other JSON
# object is taken as the app's room model (a three.js-style scene) and kept as sent, size-capped
OUR_ROOM_KEYS: Final = frozenset({"vertices", "height_m"})


def room_dialect(value: Any) -> str:
    ours = isinstance(value, Room) or (isinstance(value, dict) and bool(OUR_ROOM_KEYS & value.keys()))
    return "sonalyze" if ours else "app"


SnapshotRoom = Annotated[
    Annotated[Room, Tag("sonalyze")] | Annotated[dict[str, Any], Tag("app")],
    Discriminator(room_dialect),
]


class RoomSnapshotBody(_Input):
    room: SnapshotRoom


class RoomSnapshotShare(RoomSnapshotBody):
    lobby_id: uuid.UUID


STEP_INDEX_MAX: Final = 1_000
ProfileId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class StepUpdate(_Input):
    """``lobby.step_update`` (admin): which step of the measurement page the host shows."""

    lobby_id: uuid.UUID
    step_index: Annotated[int, Field(ge=0, le=STEP_INDEX_MAX, strict=True)]


class ProfileUpdate(_Input):
    """``lobby.profile_update`` (admin): the sweep profile the host chose (e.g. ``smartphone``)."""

    lobby_id: uuid.UUID
    profile_id: ProfileId


class EventsQuery(_Input):
    after: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1)] = 100


# --- outputs ------------------------------------------------------------------------------------


class ParticipantView(BaseModel):
    device_id: str
    role: Role
    role_slot_id: str | None
    role_slot_label: str | None
    status: ParticipantStatus
    connected: bool
    joined_at: datetime

    @classmethod
    def of(cls, participant: Participant) -> ParticipantView:
        return cls(
            device_id=participant.device_id,
            role=participant.role,
            role_slot_id=participant.role_slot_id,
            role_slot_label=participant.role_slot_label,
            status=participant.status,
            connected=participant.connected,
            joined_at=participant.joined_at,
        )


class LobbyView(BaseModel):
    """The one shape of a lobby in every answer and every push."""

    lobby_id: uuid.UUID
    code: str
    state: LobbyState
    creator_device_id: str
    # the same device under the app's name for it
    admin_device_id: str
    created_at: datetime
    room_snapshot: dict[str, Any] | None
    # the host's measurement-page step and sweep profile (None until it sends them)
    step_index: int | None
    profile_id: str | None
    participants: list[ParticipantView]

    @classmethod
    def of(cls, lobby: Lobby) -> LobbyView:
        """Needs ``lobby.participants`` loaded."""
        return cls(
            lobby_id=lobby.id,
            code=lobby.code,
            state=lobby.state,
            creator_device_id=lobby.creator_device_id,
            admin_device_id=lobby.creator_device_id,
            created_at=lobby.created_at,
            room_snapshot=lobby.room_snapshot,
            step_index=lobby.step_index,
            profile_id=lobby.profile_id,
            participants=[ParticipantView.of(p) for p in lobby.participants],
        )


class LobbySummary(BaseModel):
    """``lobby.get`` for a device that is not in the lobby: what it is, not who is in it."""

    lobby_id: uuid.UUID
    code: str
    state: LobbyState
    participant_count: int  # joined participants

    @classmethod
    def of(cls, lobby: LobbyView) -> LobbySummary:
        joined = sum(1 for p in lobby.participants if p.status is ParticipantStatus.JOINED)
        return cls(lobby_id=lobby.lobby_id, code=lobby.code, state=lobby.state, participant_count=joined)


class EventView(BaseModel):
    id: int
    lobby_id: uuid.UUID
    type: str
    device_id: str | None
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: LobbyEvent) -> EventView:
        return cls(
            id=event.id,
            lobby_id=event.lobby_id,
            type=event.type,
            device_id=event.device_id,
            payload=event.payload,
            created_at=event.created_at,
        )


class EventPage(BaseModel):
    lobby_id: uuid.UUID
    events: list[EventView]
    # the id to pass as ``after`` next time (unchanged when nothing new)
    last_event_id: int
