"""Gateway settings, named after the spec's environment variables."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from sonalyze_gateway.batching import BATCH_AFTER_IN_FLIGHT
from sonalyze_protocol.settings import ServiceSettings, strip_url

# an HS256 key shorter than the hash's 32 bytes weakens it (RFC 7518 section 3.2)
DEVICE_TOKEN_KEY_MIN_CHARS: Final = 32


class DeviceAuth(StrEnum):
    """How a socket earns a device id (``DEVICE_AUTH``)."""

    # a device id without a live socket may be claimed without a credential (the phone app knows none)
    CLAIM = "claim"
    # once a device id has been issued a credential, every connection must present it
    TOKEN = "token"


class Settings(ServiceSettings):
    """``LOBBY_URL`` ... ``HTTP_TIMEOUT_SECONDS`` as the spec lists them, plus the gateway's own knobs (backpressure, identity, CORS)."""

    # comma-separated for lobby replicas (LOBBY_REPLICAS): events go to one, the next when it cannot be reached
    lobby_url: str = "http://localhost:8001"
    measurement_url: str = "http://localhost:8002"
    simulation_url: str = "http://localhost:8003"
    storage_url: str = "http://localhost:8004"
    max_message_bytes: int = 65536
    rate_limit_rps: float = 10.0
    rate_limit_burst: int = 20
    # frames waiting for one connection; a client this far behind is dropped instead of stalling pushes
    outbound_queue_frames: int = 256
    # forwarded events waiting on one service at a time; beyond it the gateway answers `overloaded` at once
    # (about 0.1 s of the lobby's work at the rate it serves with batching: room for bursts, no long queue)
    max_inflight_per_service: int = 256
    # requests to the lobby at a time, one event each; what waits beyond them goes as one batch (batching.py)
    event_batch_after_in_flight: int = Field(default=BATCH_AFTER_IN_FLIGHT, ge=1)
    # the least `retry_after_ms` an `overloaded` answer suggests (more when the service answers slower)
    overload_retry_after_ms: int = 200
    # the internal listener (/internal/*): services reach it, phones must not (0 = any free port)
    internal_host: str = "127.0.0.1"
    internal_port: int = 8005
    device_auth: DeviceAuth = DeviceAuth.CLAIM
    # signs device credentials (HS256); unset: a random key per process (claim mode only)
    device_token_key: str = ""
    # SQLite file remembering issued device ids; unset: kept in memory (claim mode only)
    device_registry_path: Path | None = None
    # how long the old socket of a device id has to answer a ping before a new claimant takes its place
    device_liveness_timeout_s: float = 2.0
    # browser origins allowed to call the HTTP API (the app's web build), comma-separated; "*" = any
    cors_allowed_origins: Annotated[list[str], NoDecode] = []
    cors_allowed_origin_regex: str | None = None
    # the web page's folder, served at /; unset = the checkout's web/ folder
    web_dir: Path | None = None
    # while a service's answers take longer than this, fewer events are let through to it at a time
    overload_max_wait_ms: int = 500
    # Redis backplane (backplane.py): gateways sharing one share pushes, live device ids and the registry
    redis_url: str | None = None
    # keys and pub/sub channels start with this (channels are not per database: one prefix per deployment)
    redis_key_prefix: str = "sonalyze:"
    # names this gateway on the backplane; unset = "gw-" and random hex per process
    gateway_id: str = ""
    # how long a broadcast waits for another gateway's answer before counting its devices offline
    backplane_ack_timeout_ms: int = 1000

    @field_validator("lobby_url", "measurement_url", "simulation_url", "storage_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return strip_url(value)

    @field_validator(
        "max_message_bytes",
        "rate_limit_burst",
        "outbound_queue_frames",
        "max_inflight_per_service",
        "overload_retry_after_ms",
        "overload_max_wait_ms",
        "backplane_ack_timeout_ms",
    )
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("rate_limit_rps", "http_timeout_seconds", "device_liveness_timeout_s")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be greater than 0, got {value}")
        return value

    @field_validator("internal_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"must be a TCP port (0 = any free one), got {value}")
        return value

    @field_validator("gateway_id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("GATEWAY_ID must be 1-64 letters, digits, '_', '.' or '-' (it names a Redis channel)")
        return value

    @field_validator("device_token_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < DEVICE_TOKEN_KEY_MIN_CHARS:
            raise ValueError(
                f"DEVICE_TOKEN_KEY must be at least {DEVICE_TOKEN_KEY_MIN_CHARS} characters "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_allowed_origin_regex", "redis_url", "device_registry_path", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _token_mode_needs_durable_identity(self) -> Settings:
        if self.device_auth is DeviceAuth.TOKEN:
            missing = [
                name
                for name, value in (
                    ("DEVICE_TOKEN_KEY", self.device_token_key),
                    # on a Redis backplane the registry lives in Redis
                    ("DEVICE_REGISTRY_PATH", self.device_registry_path or self.redis_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"DEVICE_AUTH=token needs {' and '.join(missing)}: credentials must outlive a restart, "
                    "or every phone would be locked out (or every device id free to claim) after one"
                )
        return self
