"""Settings of the storage service, read from the environment."""

from __future__ import annotations

from sonalyze_protocol.settings import ServiceSettings


class Settings(ServiceSettings):
    # SQLite when DATABASE_URL is unset; postgresql+asyncpg://... in compose
    database_url: str = "sqlite+aiosqlite:///./storage.db"
    # apply `alembic upgrade head` at start
    run_migrations: bool = True
    # a record carries a whole simulation request (itself at most 1 MiB) plus its own fields
    max_json_body_bytes: int = 4 * 1024 * 1024
