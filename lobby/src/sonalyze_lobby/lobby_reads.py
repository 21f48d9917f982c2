"""``lobby.get`` without the ORM: one Core statement through `sonalyze_db.RowReader`, its rows as the view.

The lobby's hottest read (a phone polls its lobby; the gateway benchmark's routed event). Loaded through an
``AsyncSession`` with its participants joined it cost ~0.9 ms of CPU in process, most of a routed event's
cost, against ~0.03-0.1 ms for the same rows here (`RowReader`). A read never needs the ORM's identity map
or change tracking; use cases that change a lobby still load it through the session (`service.get_lobby`).

One statement, so the lobby and its participants come from one snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, select

from sonalyze_db import RowReader
from sonalyze_db.rows import Row
from sonalyze_lobby.models import Lobby, LobbyState, Participant
from sonalyze_lobby.schemas import LobbyView, ParticipantView

_LOBBIES: Final = cast(Table, Lobby.__table__)
_PARTICIPANTS: Final = cast(Table, Participant.__table__)
# the view's fields, in the statement's column order: the lobby's (its id as ``lobby_id``), then a participant's
_LOBBY_COLUMNS: Final = ("id", "code", "state", "creator_device_id", "created_at", "room_snapshot", "step_index",
                         "profile_id")  # fmt: skip
_VIEW_FIELDS: Final = ("lobby_id", *_LOBBY_COLUMNS[1:])
_PARTICIPANT_FIELDS: Final = tuple(ParticipantView.model_fields)
_N_LOBBY_COLUMNS: Final = len(_LOBBY_COLUMNS)


def _lobby_with_participants(chosen_lobby_id: ColumnElement[Any]) -> Select[Any]:
    """The lobby ``chosen_lobby_id`` names, one row per participant in the order they joined (as
    `Lobby.participants`), or one row of NULLs for none."""
    columns: list[ColumnElement[Any]] = [_LOBBIES.c[name] for name in _LOBBY_COLUMNS]
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


def _view(rows: Sequence[Row]) -> LobbyView | None:
    if not rows:
        return None
    participants = [
        ParticipantView(**dict(zip(_PARTICIPANT_FIELDS, row[_N_LOBBY_COLUMNS:], strict=True)))
        for row in rows
        if row[_N_LOBBY_COLUMNS] is not None  # a lobby without participants: participant columns all NULL
    ]
    lobby = dict(zip(_VIEW_FIELDS, rows[0][:_N_LOBBY_COLUMNS], strict=True))
    return LobbyView(**lobby, admin_device_id=lobby["creator_device_id"], participants=participants)


async def lobby_by_id(rows: RowReader, lobby_id: uuid.UUID) -> LobbyView | None:
    return _view(await rows.all(_BY_ID, {"lobby_id": lobby_id}))


async def lobby_by_code(rows: RowReader, code: str) -> LobbyView | None:
    """The open lobby with this (normalised) code, else a closed one, else None."""
    return _view(await rows.all(_BY_CODE, {"code": code}))
