"""Gateway settings that guard device identity and CORS (no process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sonalyze_gateway.settings import DeviceAuth, Settings

KEY = "k" * 43


class TestDeviceAuthSettings:
    def test_claim_is_the_default_and_needs_nothing(self) -> None:
        settings = Settings(_env_file=None)
        assert settings.device_auth is DeviceAuth.CLAIM and settings.device_token_key == ""

    @pytest.mark.parametrize(
        ("extra", "missing"),
        [({}, "DEVICE_TOKEN_KEY and DEVICE_REGISTRY_PATH"), ({"device_token_key": KEY}, "DEVICE_REGISTRY_PATH")],
    )
    def test_token_mode_refuses_to_start_without_a_key_and_a_registry(
        self, extra: dict[str, str], missing: str
    ) -> None:
        with pytest.raises(ValidationError, match=f"needs {missing}"):
            Settings(device_auth="token", **extra)

    def test_token_mode_with_both(self, tmp_path: Path) -> None:
        settings = Settings(device_auth="token", device_token_key=KEY, device_registry_path=tmp_path / "d.sqlite3")
        assert settings.device_auth is DeviceAuth.TOKEN

    def test_a_short_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="at least 32 characters"):
            Settings(device_token_key="secret")


class TestCorsSettings:
    def test_origins_are_a_comma_separated_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "http://localhost:5000, https://app.example/ ,")
        assert Settings().cors_allowed_origins == ["http://localhost:5000", "https://app.example"]

    def test_unset_means_no_origin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
        assert Settings().cors_allowed_origins == [] and Settings().cors_allowed_origin_regex is None
