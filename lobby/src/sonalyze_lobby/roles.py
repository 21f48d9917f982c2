"""`Role`: what a lobby participant does in a measurement (stored per participant, used by the protocol)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A participant's role; the lobby's admin is not a role but the lobby's creator (``admin_device_id``)."""

    NONE = "none"
    SPEAKER = "speaker"
    MICROPHONE = "microphone"
