"""``/v1/lobbies``: one row per lobby the lobby service ran, keyed by that service's ``lobby_id``."""

from __future__ import annotations

from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import Lobby
from sonalyze_storage.schemas import LobbyCreate, LobbyFilters, LobbyRead, LobbyUpdate

ENTITY = Entity(
    name="lobby",
    path="lobbies",
    model=Lobby,
    create=LobbyCreate,
    update=LobbyUpdate,
    read=LobbyRead,
    filters=LobbyFilters,
    natural_key=("lobby_id",),
)

router = crud_router(ENTITY)
