"""Settings of the storage service, read from the environment."""

from __future__ import annotations

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    # SQLite when DATABASE_URL is unset; postgresql+asyncpg://... in compose
    database_url: str = "sqlite+aiosqlite:///./storage.db"
    # apply `alembic upgrade head` at start
    run_migrations: bool = True
