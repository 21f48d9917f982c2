"""``lobby.get`` without the ORM: one Core statement through `sonalyze_db.RowReader`, its rows as records.

The lobby's hottest read (a phone polls its lobby; the gateway benchmark's routed event). Loaded through an
``AsyncSession`` with its participants joined it cost ~0.9 ms of CPU in process, most of a routed event's
cost, against ~0.1 ms for the same rows here (`RowReader`). A read never needs the ORM's identity map or
change tracking; use cases that change a lobby still load it through the session (`service.get_lobby`).

One statement, so the lobby and its participants come from one snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, select

from sonalyze_db import RowReader
from sonalyze_db.rows import Row
from sonalyze_lobby.models import Lobby, LobbyState, Participant, ParticipantStatus
from sonalyze_lobby.roles import Role


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """What a view shows of a participant (the fields of `ParticipantView`)."""

    device_id: str
    role: Role
    role_slot_id: str | None
    role_slot_label: str | None
    status: ParticipantStatus
    connected: bool
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class LobbyRecord:
    """What a view shows of a lobby, participants in the order they joined (as `Lobby.participants`)."""

    id: uuid.UUID
    code: str
    state: LobbyState
    creator_device_id: str
    created_at: datetime
    room_snapshot: dict[str, Any] | None
    step_index: int | None
    profile_id: str | None
    participants: tuple[ParticipantRecord, ...]

    def participant(self, device_id: str) -> ParticipantRecord | None:
        return next((p for p in self.participants if p.device_id == device_id), None)


_LOBBIES: Final = cast(Table, Lobby.__table__)
_PARTICIPANTS: Final = cast(Table, Participant.__table__)
_LOBBY_FIELDS: Final = tuple(f for f in LobbyRecord.__dataclass_fields__ if f != "participants")
_PARTICIPANT_FIELDS: Final = tuple(ParticipantRecord.__dataclass_fields__)  # the records' field order is the rows'


def _lobby_with_participants(chosen_lobby_id: ColumnElement[Any]) -> Select[Any]:
    """The lobby ``chosen_lobby_id`` names, one row per participant (one row of NULLs for none)."""
    columns: list[ColumnElement[Any]] = [_LOBBIES.c[name] for name in _LOBBY_FIELDS]
    columns += [_PARTICIPANTS.c[name].label(f"participant_{name}") for name in _PARTICIPANT_FIELDS]
    return (
        select(*columns)
        .select_from(_LOBBIES.outerjoin(_PARTICIPANTS, _PARTICIPANTS.c.lobby_id == _LOBBIES.c.id))
        .where(_LOBBIES.c.id == chosen_lobby_id)
        .order_by(_PARTICIPANTS.c.joined_at)
    )


# built once, values bound per call (`service` does the same for its ORM statements)
_BY_ID: Final = _lobby_with_participants(bindparam("lobby_id", type_=_LOBBIES.c.id.type))
# the open lobby with the code if there is one (at most one), else a closed one (`service.find_lobby_by_code`)
_BY_CODE: Final = _lobby_with_participants(
    select(_LOBBIES.c.id)
    .where(_LOBBIES.c.code == bindparam("code"))
    .order_by(_LOBBIES.c.state == LobbyState.CLOSED)
    .limit(1)
    .scalar_subquery()
)


_N_LOBBY_FIELDS: Final = len(_LOBBY_FIELDS)


def _record(rows: Sequence[Row]) -> LobbyRecord | None:
    """Rows of `_lobby_with_participants` (the lobby's fields, then the participant's) as one record."""
    if not rows:
        return None
    participants = tuple(
        ParticipantRecord(*row[_N_LOBBY_FIELDS:]) for row in rows if row[_N_LOBBY_FIELDS] is not None
    )  # a lobby without participants: one row whose participant columns are NULL
    return LobbyRecord(**dict(zip(_LOBBY_FIELDS, rows[0], strict=False)), participants=participants)


async def lobby_by_id(rows: RowReader, lobby_id: uuid.UUID) -> LobbyRecord | None:
    return _record(await rows.all(_BY_ID, {"lobby_id": lobby_id}))


async def lobby_by_code(rows: RowReader, code: str) -> LobbyRecord | None:
    """The open lobby with this (normalised) code, else a closed one, else None."""
    return _record(await rows.all(_BY_CODE, {"code": code}))
