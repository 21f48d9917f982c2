"""Settings every service shares; each service subclasses `ServiceSettings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sonalyze_protocol.auth import PUBLIC_INTERNAL_TOKENS
from sonalyze_protocol.json_rule import DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_JSON_DEPTH


class ServiceSettings(BaseSettings):
    """Read from the environment (names are the upper-case field names)."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    log_level: str = "INFO"
    # no default: unset or empty never authenticates (``make run`` generates one per run, compose requires it)
    internal_auth_token: str = ""
    http_timeout_seconds: float = 30.0
    # where this service queues its records for the storage service; unset = recording into storage is off
    outbox_dir: Path | None = None
    # the JSON rule (sonalyze_protocol.json_rule): larger bodies get 413, deeper nesting 400
    max_json_body_bytes: int = Field(default=DEFAULT_MAX_JSON_BYTES, ge=1024)
    max_json_depth: int = Field(default=DEFAULT_MAX_JSON_DEPTH, ge=2, le=256)

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError(f"LOG_LEVEL must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG, got {value!r}")
        return level

    @field_validator("internal_auth_token")
    @classmethod
    def _not_a_public_token(cls, value: str) -> str:
        if value.strip() in PUBLIC_INTERNAL_TOKENS:
            raise ValueError(
                f"INTERNAL_AUTH_TOKEN {value.strip()!r} is a published example value, so anyone could use it; "
                "set a random secret (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @property
    def has_internal_token(self) -> bool:
        return bool(self.internal_auth_token)


def strip_url(value: str) -> str:
    """Service URLs are stored without a trailing slash so paths join cleanly."""
    return value.strip().rstrip("/")
