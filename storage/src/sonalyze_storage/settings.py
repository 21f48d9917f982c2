"""Settings of the storage service, read from the environment."""

from __future__ import annotations

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    database_url: str = "sqlite+aiosqlite:///./storage.db"
    run_migrations: bool = True
