"""Settings of the lobby service, read from the environment."""

from __future__ import annotations

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    database_url: str = "sqlite+aiosqlite:///./lobby.db"
    run_migrations: bool = True
    gateway_url: str = "http://localhost:8000"
    measurement_url: str = "http://localhost:8002"
    storage_url: str = "http://localhost:8004"
