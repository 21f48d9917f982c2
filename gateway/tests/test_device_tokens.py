"""Device credentials and the registry of issued device ids (pure, no sockets)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from sonalyze_gateway.device_registry import DeviceRegistry
from sonalyze_gateway.device_tokens import DeviceTokens, InvalidDeviceToken, generate_key, key_fingerprint

KEY = generate_key()


class TestDeviceTokens:
    def test_a_token_names_its_device_and_generation(self) -> None:
        tokens = DeviceTokens(KEY)
        claims = tokens.verify(tokens.issue("phone-1", 3))
        assert (claims.device_id, claims.generation) == ("phone-1", 3)

    def test_a_token_signed_with_another_key_is_refused(self) -> None:
        forged = DeviceTokens(generate_key()).issue("phone-1", 1)
        with pytest.raises(InvalidDeviceToken, match="not issued by this gateway"):
            DeviceTokens(KEY).verify(forged)

    def test_an_unsigned_token_is_refused(self) -> None:
        unsigned = jwt.encode({"sub": "phone-1", "gen": 1, "iss": "sonalyze-gateway"}, None, algorithm="none")
        with pytest.raises(InvalidDeviceToken):
            DeviceTokens(KEY).verify(unsigned)

    @pytest.mark.parametrize("token", ["", "x", "a.b.c", "x" * 2000])
    def test_garbage_is_refused(self, token: str) -> None:
        with pytest.raises(InvalidDeviceToken):
            DeviceTokens(KEY).verify(token)

    @pytest.mark.parametrize("claims", [{"sub": "p"}, {"sub": "p", "gen": "1"}, {"gen": 1}, {"sub": "p", "gen": True}])
    def test_missing_or_mistyped_claims_are_refused(self, claims: dict[str, object]) -> None:
        token = jwt.encode({**claims, "iss": "sonalyze-gateway", "iat": int(time.time())}, KEY, algorithm="HS256")
        with pytest.raises(InvalidDeviceToken):
            DeviceTokens(KEY).verify(token)


class TestDeviceRegistry:
    def test_issue_is_idempotent_and_revoke_bumps_the_generation(self) -> None:
        registry = DeviceRegistry(None, key_fingerprint(KEY))
        assert not registry.is_issued("p")
        assert registry.issue("p") == registry.issue("p") == 1
        assert registry.is_current("p", 1)
        assert registry.revoke("p") and not registry.revoke("p")
        assert not registry.is_issued("p") and not registry.is_current("p", 1)
        assert registry.issue("p") == 2 and registry.is_current("p", 2) and not registry.is_current("p", 1)

    def test_issued_ids_survive_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "devices.sqlite3"
        first = DeviceRegistry(path, key_fingerprint(KEY))
        first.issue("a"), first.issue("b"), first.revoke("b")
        first.close()
        again = DeviceRegistry(path, key_fingerprint(KEY))
        assert again.is_current("a", 1) and not again.is_issued("b") and again.issue("b") == 2
        assert len(again) == 2

    def test_another_key_starts_a_new_registry(self, tmp_path: Path) -> None:
        path = tmp_path / "devices.sqlite3"
        DeviceRegistry(path, key_fingerprint(KEY)).issue("a")
        assert not DeviceRegistry(path, key_fingerprint(generate_key())).is_issued("a")
