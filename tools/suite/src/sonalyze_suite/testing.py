"""Support for tests that need a real database or real processes.

`TEST_DATABASE_URL` (a PostgreSQL URL with rights to create databases) switches database-backed
tests to PostgreSQL: each user of `create_database` gets a fresh database of its own, dropped
afterwards, so services and test sessions never share tables. Without it, SQLite files are used.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from sonalyze_suite.launcher import Suite, SuiteConfig


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


@asynccontextmanager
async def running_suite(config: SuiteConfig, log_dir: Path, start_timeout_s: float = 120.0) -> AsyncIterator[Suite]:
    """The services of ``config`` as real processes for the ``async with`` block, stopped however it ends.

    Starting and stopping block (they wait on health checks and child exits), so they run in a thread
    and the test's event loop stays free.
    """
    from sonalyze_suite.launcher import Suite

    running = Suite(config, log_dir=log_dir)
    await asyncio.to_thread(running.start, start_timeout_s)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


@asynccontextmanager
async def served_app(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` under uvicorn in this process on a free local port, lifespan included; yields its base URL.

    For tests that need a real server and the app object together (worker pools, disconnects).
    """
    import uvicorn

    from sonalyze_suite.launcher import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (it computes nothing), read from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
