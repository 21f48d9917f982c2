"""Fixtures every test folder may use: throw-away databases and free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sonalyze_suite.launcher import free_port
from sonalyze_suite.testing import create_database, drop_database, sqlite_url, test_database_url


@pytest.fixture(scope="session")
async def make_database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """``await make_database_url("lobby")`` -> a URL of a fresh, empty database.

    PostgreSQL (a new database, dropped at the end) when TEST_DATABASE_URL is set, else a SQLite file.
    """
    admin_url = test_database_url()
    created: list[str] = []

    async def make(prefix: str) -> str:
        if admin_url:
            url = await create_database(admin_url, prefix)
            created.append(url)
            return url
        return sqlite_url(tmp_path_factory.mktemp(prefix), prefix)

    yield make
    for url in created:
        await drop_database(admin_url, url)  # type: ignore[arg-type]


@pytest.fixture
def unused_port() -> int:
    return free_port()
