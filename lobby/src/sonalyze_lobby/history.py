"""The lobby's long-term record in the storage service: the lobby and its participants after each change.

Written through the outbox (`sonalyze_protocol.storage_client`), after the lobby's own commit, as one
background task per change so a slow disk never delays a phone's answer. Storage upserts by natural
key (lobby id; lobby id + device id), so writing the whole lobby again is harmless.
"""

from __future__ import annotations

from typing import Any

from sonalyze_lobby.models import Lobby
from sonalyze_protocol.storage_client import StorageRecorder


async def _write(recorder: StorageRecorder, lobby_fields: dict[str, Any], participants: list[dict[str, Any]]) -> bool:
    ok = await recorder.lobby(**lobby_fields)
    for fields in participants:  # after the lobby: storage refuses a participant of an unknown lobby
        ok = await recorder.participant(**fields) and ok
    return ok


def record_lobby(recorder: StorageRecorder | None, lobby: Lobby) -> None:
    """Queue the lobby and every participant as they are now (participants must be loaded)."""
    if recorder is None:
        return
    lobby_id = str(lobby.id)
    lobby_fields = {
        "lobby_id": lobby_id,
        "code": lobby.code,
        "admin_device_id": lobby.creator_device_id,
        "status": lobby.state.value,
        "opened_at": lobby.created_at,
        "closed_at": lobby.closed_at,
    }
    participants = [
        {
            "lobby_id": lobby_id,
            "device_id": p.device_id,
            "role": p.role.value,
            "role_slot_id": p.role_slot_id,
            "joined_at": p.joined_at,
            "left_at": p.left_at,
        }
        for p in lobby.participants
    ]
    recorder.in_background(_write(recorder, lobby_fields, participants))
