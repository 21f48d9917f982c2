"""Device credentials: HS256 JSON Web Tokens (PyJWT) binding a device id to a registry generation.

A token carries ``sub`` (the device id) and ``gen`` (the device's generation in the registry when it
was issued). Checking one needs the server key and the device's current generation, which the
gateway keeps in memory: no database lookup per connection, none per message. Revoking a device
bumps its generation, which voids every token issued before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

import jwt

ALGORITHM: Final = "HS256"
ISSUER: Final = "sonalyze-gateway"
TOKEN_MAX_CHARS: Final = 1024
# at least as many bytes of key as the HMAC's output (RFC 7518 section 3.2)
GENERATED_KEY_BYTES: Final = 32


class InvalidDeviceToken(Exception):
    """The token is malformed, not signed with our key, or lacks its claims; the message says which."""


@dataclass(frozen=True, slots=True)
class DeviceClaims:
    device_id: str
    generation: int


def generate_key() -> str:
    return secrets.token_urlsafe(GENERATED_KEY_BYTES)


def key_fingerprint(key: str) -> str:
    """Names a key without revealing it (the registry remembers which key its generations belong to)."""
    return hmac.new(key.encode(), b"sonalyze device registry", hashlib.sha256).hexdigest()[:16]


class DeviceTokens:
    """Signs and checks device tokens with one server key."""

    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("a device token key must not be empty")
        self._key = key

    def issue(self, device_id: str, generation: int) -> str:
        claims = {"sub": device_id, "gen": generation, "iss": ISSUER, "iat": int(time.time())}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> DeviceClaims:
        """The claims of a token this gateway signed; `InvalidDeviceToken` otherwise."""
        if not token or len(token) > TOKEN_MAX_CHARS:
            raise InvalidDeviceToken("device_token is empty or too long")
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["sub", "gen", "iss"]}
            )
        except jwt.InvalidSignatureError:
            raise InvalidDeviceToken("device_token was not issued by this gateway") from None
        except jwt.PyJWTError as exc:
            raise InvalidDeviceToken(f"device_token is malformed ({type(exc).__name__})") from None
        generation = claims.get("gen")
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise InvalidDeviceToken("device_token is malformed (gen)")
        return DeviceClaims(str(claims["sub"]), generation)
