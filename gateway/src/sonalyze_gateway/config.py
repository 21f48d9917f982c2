"""Gateway settings, named after the spec's environment variables."""

from __future__ import annotations

from pydantic import field_validator
from sonalyze_protocol.settings import ServiceSettings, strip_url


class Settings(ServiceSettings):
    """``LOBBY_URL`` ... ``HTTP_TIMEOUT_SECONDS`` as the spec lists them, plus ``OUTBOUND_QUEUE_FRAMES`` and the backpressure bounds."""

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
    max_inflight_per_service: int = 64
    # the least `retry_after_ms` an `overloaded` answer suggests (more when the service answers slower)
    overload_retry_after_ms: int = 200

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
    )
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("rate_limit_rps", "http_timeout_seconds")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be greater than 0, got {value}")
        return value
