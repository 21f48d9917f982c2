"""Settings of the storage service, read from the environment."""

from __future__ import annotations

from pydantic import field_validator

from sonalyze_db import PoolSettings, normalize_database_url
from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    # SQLite when DATABASE_URL is unset; postgresql+asyncpg://... in compose (postgres:// works too)
    database_url: str = "sqlite+aiosqlite:///./storage.db"
    # apply `alembic upgrade head` at start
    run_migrations: bool = True
    # a record carries a whole simulation request (itself at most 1 MiB) plus its own fields
    max_json_body_bytes: int = 4 * 1024 * 1024

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Plain ``postgresql://`` / ``sqlite://`` URLs get the async drivers this service runs on."""
        return normalize_database_url(value)

    @property
    def database_pool(self) -> PoolSettings:
        """SQLAlchemy's default pool (5 + 10, 30 s), each PostgreSQL connection pinged before use: storage
        serves the outboxes' steady trickle, and after a database restart the first write succeeds."""
        return PoolSettings(size=5, overflow=10, timeout_s=30.0, pre_ping=True)
