"""Support for tests that need a real database or real processes.

`TEST_DATABASE_URL` (a PostgreSQL URL with rights to create databases) switches database-backed
tests to PostgreSQL: each user of `create_database` gets a fresh database of its own, dropped
afterwards, so services and test sessions never share tables. Without it, SQLite files are used.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def test_database_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(database=database)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


async def create_database(admin_url: str, prefix: str) -> str:
    """Create an empty PostgreSQL database named ``<prefix>_<random>``; returns its asyncpg URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}".lower()
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def sqlite_url(directory: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{(directory / f'{name}.db').resolve()}"
