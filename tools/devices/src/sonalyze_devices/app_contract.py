"""What the Sonalyze phone app reads, as data: spec phone-app.md sections 2 and 3.

``H`` fields are hard casts in the app (``as String``, ``as List``, ``as Map``): missing, null or of
another type, the app throws and its flow stops. ``O`` fields are optional reads; when present they
must still have the type the app expects. The virtual phones of ``--dialect app`` check every answer
and push against these tables on receipt and fail loudly (`HardCastError`) where the app would throw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

NUMBER: Final = (int, float)
ROLES: Final = frozenset({"none", "speaker", "microphone"})


class HardCastError(Exception):
    """A field the app casts is missing or of the wrong type: the real app would throw here."""


@dataclass(frozen=True)
class Field:
    name: str
    types: type | tuple[type, ...]
    hard: bool  # H (hard cast) or O (optional read)


def H(name: str, types: type | tuple[type, ...]) -> Field:
    return Field(name, types, hard=True)


def O(name: str, types: type | tuple[type, ...]) -> Field:  # noqa: E743 - the spec's own letter
    return Field(name, types, hard=False)


# section 2: the answer's ``data`` of each request the app sends
RESPONSES: Final[dict[str, tuple[Field, ...]]] = {
    "lobby.create": (H("code", str), H("lobby_id", str), H("admin_device_id", str)),
    "lobby.join": (H("code", str), H("lobby_id", str), H("participants", list)),
    "lobby.get": (H("lobby_id", str), H("participants", list)),
    "role.assign": (),
    "lobby.room_snapshot": (),
    "lobby.step_update": (),
    "lobby.profile_update": (),
    "measurement.create_job": (H("job_id", str),),
    "measurement.create_session": (H("session_id", str), O("audio_duration_seconds", NUMBER)),
    "measurement.start_speaker": (),
    "measurement.ready": (),
    "measurement.speaker_audio_ready": (),
    "measurement.recording_started": (),
    "measurement.playback_complete": (),
    "measurement.recording_uploaded": (),
    "analysis.run": (H("results", dict),),
    "measurement.broadcast_results": (),
}
# each entry of ``participants`` in lobby.join / lobby.get
PARTICIPANT: Final = (H("device_id", str), H("role", str), O("role_slot_id", str), O("role_slot_label", str))

# section 3: the ``data`` of each push the app handles
PUSHES: Final[dict[str, tuple[Field, ...]]] = {
    "lobby.updated": (O("type", str), O("lobby_id", str)),
    "lobby.room_snapshot": (O("lobby_id", str), O("room", dict)),
    "lobby.step_update": (O("lobby_id", str), O("step_index", int)),
    "lobby.profile_update": (O("lobby_id", str), O("profile_id", str)),
    "measurement.start_measurement": (
        H("session_id", str), O("job_id", str), O("speaker_device_id", str), O("current_speaker_slot_id", str),
    ),
    "measurement.request_audio": (
        H("session_id", str), O("audio_url", str), O("audio_endpoint", str), O("expected_hash", str),
    ),
    "measurement.start_recording": (H("session_id", str), H("speaker_slot_id", str)),
    "measurement.start_playback": (H("session_id", str), O("speaker_slot_id", str)),
    "measurement.stop_recording": (
        H("session_id", str), H("speaker_slot_id", str), H("upload_endpoint", str), O("job_id", str),
    ),
    "measurement.speaker_complete": (O("completed_speaker_slot_id", str), O("remaining_speakers", int)),
    "measurement.session_complete": (H("session_id", str), O("completed_speakers", list)),
    "measurement.session_cancelled": (O("reason", str),),
    "measurement.error": (O("error_device_id", str), O("error_message", str), O("error_code", str)),
    "measurement.phase_update": (
        O("session_id", str), O("phase", str), O("phase_description", str),
        O("recordings_started", int), O("total_microphones", int),
    ),
    "measurement.analysis_results": (O("results", dict),),
}  # fmt: skip


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_fields(where: str, data: Any, fields: tuple[Field, ...]) -> None:
    """Raise `HardCastError` for a missing or mistyped H field, or an O field present with a wrong type."""
    if not isinstance(data, dict):
        raise HardCastError(f"{where}: data is {_kind(data)}, the app reads it as a map")
    for f in fields:
        value = data.get(f.name)
        if value is None:
            if f.hard:
                raise HardCastError(f"{where}: hard-cast field {f.name!r} is missing or null")
            continue
        if isinstance(value, bool) or not isinstance(value, f.types):
            raise HardCastError(f"{where}: field {f.name!r} is {_kind(value)}, the app casts it to {f.types}")


def check_response(event: str, data: Any) -> None:
    """The answer to one of the app's requests (section 2), participants included."""
    fields = RESPONSES.get(event)
    if fields is None:
        return
    if not fields and data is None:
        return  # the app reads nothing from it
    check_fields(f"answer to {event}", data, fields)
    if event in ("lobby.join", "lobby.get"):
        for index, participant in enumerate(data["participants"]):
            check_fields(f"answer to {event}: participants[{index}]", participant, PARTICIPANT)
            if participant["role"] not in ROLES:
                raise HardCastError(f"answer to {event}: participants[{index}].role {participant['role']!r}")


def check_push(event: str, data: Any) -> None:
    """A push the app handles (section 3); other pushes are not the app's business."""
    fields = PUSHES.get(event)
    if fields is not None:
        check_fields(f"push {event}", data, fields)


def hard(data: dict[str, Any], name: str, types: type | tuple[type, ...] = str) -> Any:
    """Read one field the way the app does, with a hard cast."""
    check_fields("read", data, (H(name, types),))
    return data[name]
