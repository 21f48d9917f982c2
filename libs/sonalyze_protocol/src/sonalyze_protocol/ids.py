"""`DeviceId`: the one rule for a device's id, wherever it arrives (gateway, lobby, measurement service).

1 to 128 printable ASCII characters without spaces: the id travels in the ``X-Device-Id`` header, in log
lines and (the app's convention) in upload names. The gateway has enforced this since devices first
identified, so every id a service sees from a phone already satisfies it.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import StringConstraints

DEVICE_ID_MAX_CHARS: Final = 128
DEVICE_ID_PATTERN: Final = r"^[!-~]+$"
DEVICE_ID_RULE: Final = f"1 to {DEVICE_ID_MAX_CHARS} printable ASCII characters without spaces"

DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=DEVICE_ID_MAX_CHARS, pattern=DEVICE_ID_PATTERN)]

_DEVICE_ID: Final = re.compile(DEVICE_ID_PATTERN)


def is_device_id(value: str) -> bool:
    """Whether ``value`` follows the rule (for ids that arrive outside a pydantic model)."""
    return len(value) <= DEVICE_ID_MAX_CHARS and _DEVICE_ID.fullmatch(value) is not None
