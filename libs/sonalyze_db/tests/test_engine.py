"""Engines: URL normalisation, SQLite's pragmas and transactions, which engine reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from sonalyze_db import PoolSettings, make_engine, make_read_engine, normalize_database_url
from sonalyze_db.engine import Database


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("  postgresql+asyncpg://u@h/db ", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:////data/x.db", "sqlite+aiosqlite:////data/x.db"),
    ],
)
def test_plain_urls_get_the_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


async def _pragmas(engine: AsyncEngine) -> dict[str, object]:
    async with engine.connect() as connection:
        return {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "query_only")
        }


class TestSqliteFile:
    async def test_writer_is_wal_with_foreign_keys_and_the_synchronous_asked_for(self, tmp_path: Path) -> None:
        for synchronous, level in (("NORMAL", 1), ("FULL", 2)):
            engine = make_engine(f"sqlite:///{tmp_path}/{synchronous}.db", synchronous=synchronous)  # type: ignore[arg-type]
            try:
                assert await _pragmas(engine) == {
                    "journal_mode": "wal",
                    "synchronous": level,
                    "foreign_keys": 1,
                    "query_only": 0,
                }
            finally:
                await engine.dispose()

    async def test_reader_is_a_separate_query_only_engine_that_reads_beside_an_open_write(self, tmp_path: Path) -> None:
        database = Database.open(f"sqlite+aiosqlite:///{tmp_path}/db.db", PoolSettings(size=2, overflow=0))
        try:
            assert database.read_engine is not database.engine
            assert (await _pragmas(database.read_engine))["query_only"] == 1
            async with database.engine.begin() as connection:
                await connection.execute(text("CREATE TABLE t (x INTEGER)"))
                await connection.execute(text("INSERT INTO t VALUES (1)"))
            async with database.engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
                await writer.execute(text("INSERT INTO t VALUES (2)"))
                async with database.read_engine.connect() as reader:  # WAL: reads the last commit at once
                    assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar() == 1
        finally:
            await database.dispose()

    async def test_row_reader_reads_inline_each_statement_a_fresh_snapshot_and_never_writes(
        self, tmp_path: Path
    ) -> None:
        """The hot reads (`RowReader`): beside an open write they see the last commit, right after a commit
        the new one (each statement its own read transaction), and they cannot write."""
        database = Database.open(f"sqlite+aiosqlite:///{tmp_path}/db.db")
        count = text("SELECT count(*) FROM t")
        try:
            async with database.engine.begin() as connection:
                await connection.execute(text("CREATE TABLE t (x INTEGER)"))
                await connection.execute(text("INSERT INTO t VALUES (1)"))
            assert (await database.rows.all(count))[0][0] == 1
            async with database.engine.begin() as writer:  # holds the write lock
                await writer.execute(text("INSERT INTO t VALUES (2)"))
                assert (await asyncio.wait_for(database.rows.all(count), 1.0))[0][0] == 1
            assert (await database.rows.all(count))[0][0] == 2
            with pytest.raises(OperationalError, match="readonly"):
                await database.rows.all(text("INSERT INTO t VALUES (3)"))
        finally:
            await database.dispose()

    async def test_in_memory_database_is_one_shared_connection(self) -> None:
        engine = make_engine("sqlite+aiosqlite:///:memory:")
        try:
            assert make_read_engine("sqlite+aiosqlite:///:memory:", engine) is engine
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        finally:
            await engine.dispose()


async def test_the_test_database_answers_and_postgres_reads_through_the_writer(
    make_database_url: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database_url("db_engine")
    database = Database.open(url)
    try:
        if url.startswith("postgresql"):
            assert database.read_engine is database.engine
        async with database.read_sessionmaker() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
        assert (await database.rows.all(text("SELECT :x"), {"x": "seven"}))[0][0] == "seven"
        with pytest.raises(DBAPIError, match=r"(?i)read.?only"):  # the hot reads never write
            await database.rows.all(text("CREATE TABLE never_created (x INTEGER)"))
    finally:
        await database.dispose()
