"""Settings of the simulation service, read from the environment."""

from __future__ import annotations

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    gateway_url: str = "http://localhost:8000"
    storage_url: str = "http://localhost:8004"
