"""Gateway settings, named after the spec's environment variables."""

from __future__ import annotations

from pydantic import field_validator
from sonalyze_protocol.settings import ServiceSettings, strip_url


class Settings(ServiceSettings):
    lobby_url: str = "http://localhost:8001"
    measurement_url: str = "http://localhost:8002"
    simulation_url: str = "http://localhost:8003"
    storage_url: str = "http://localhost:8004"
    max_message_bytes: int = 65536
    rate_limit_rps: float = 10.0
    rate_limit_burst: int = 20

    @field_validator("lobby_url", "measurement_url", "simulation_url", "storage_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return strip_url(value)
