"""Lobby codes: six characters people can read aloud and type without mixing up look-alikes."""

from __future__ import annotations

import secrets
from typing import Final

# upper-case letters and digits without 0/O and 1/I/L
CODE_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH: Final = 6


def generate_code() -> str:
    """A random code from `CODE_ALPHABET` (31**6, about 8.9e8 codes); uniqueness is the database's job."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(raw: str) -> str:
    """What the user typed -> the stored form: surrounding spaces dropped, upper case."""
    return raw.strip().upper()


def is_well_formed(code: str) -> bool:
    """True when a normalised code has the right length and only alphabet characters."""
    return len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code)
