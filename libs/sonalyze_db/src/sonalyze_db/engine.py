"""Engines and sessions: SQLite (a file, or in memory) by default, PostgreSQL through asyncpg.

Two engines: `make_engine` for use cases that may write, `make_read_engine` for those that only read.
On SQLite (WAL) they differ: writers take turns on one connection, readers never wait for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from fastapi import Request
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from sonalyze_db import sqlite_inline
from sonalyze_db.rows import SQLITE_READ_BUSY_TIMEOUT_S, SQLITE_READ_PRAGMAS, RowReader

# the writer waits this long for SQLite's write lock, which only another process (a migration run by
# hand) can hold: in this process writers take turns on one connection before they ask for it
SQLITE_BUSY_TIMEOUT_S: Final = 5
# SQLite's writer engine holds one connection: writers queue for it in asyncio, FIFO, instead of
# polling SQLite's busy handler; readers have their own connections and never wait for it (WAL)
SQLITE_WRITER_CONNECTIONS: Final = 1

# plain URLs get the async drivers the services run on
_ASYNC_DRIVERS: Final = (
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
    ("sqlite://", "sqlite+aiosqlite://"),
)

# WAL: readers keep reading while one writer writes. synchronous=NORMAL: in WAL mode a commit is
# durable against a crash of the process, and the database stays consistent after a power loss, which
# may lose the last commits; FULL syncs the log on every commit and loses none.
Synchronous = Literal["NORMAL", "FULL"]


def normalize_database_url(database_url: str) -> str:
    """``postgres://`` / ``postgresql://`` / ``sqlite://`` -> the same URL with asyncpg / aiosqlite."""
    value = database_url.strip()
    for plain, async_ in _ASYNC_DRIVERS:
        if value.startswith(plain):
            return async_ + value[len(plain) :]
    return value


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Connections of an engine's pool (PostgreSQL, and SQLite's readers): ``size`` kept, ``overflow``
    more under load, ``timeout_s`` to wait for one before the request fails as unavailable;
    ``pre_ping`` checks a PostgreSQL connection with a round trip before each use."""

    size: int = 20
    overflow: int = 10
    timeout_s: float = 10.0
    pre_ping: bool = False


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def _in_memory(database_url: str) -> bool:
    return make_url(database_url).database in (None, "", ":memory:")


def sqlite_writer_pragmas(synchronous: Synchronous) -> tuple[str, ...]:
    return ("journal_mode=WAL", f"synchronous={synchronous}", "foreign_keys=ON")


SQLITE_READER_PRAGMAS: Final = ("journal_mode=WAL", *SQLITE_READ_PRAGMAS)


def make_engine(
    database_url: str, pool: PoolSettings = PoolSettings(), *, synchronous: Synchronous = "NORMAL"
) -> AsyncEngine:
    """The engine every use case starts from, writers included.

    SQLite: one connection, every transaction ``BEGIN IMMEDIATE``, so writers are serialised by the
    pool and a read-then-write use case never meets another writer halfway; ``synchronous`` as given.
    PostgreSQL: a pool of ``pool`` connections (a dropped connection invalidates the pool; with
    ``pool.pre_ping`` each checkout is tested first).
    """
    database_url = normalize_database_url(database_url)
    if is_sqlite(database_url):
        if _in_memory(database_url):  # one database per connection: everything shares one
            engine = create_async_engine(database_url, poolclass=StaticPool)
        else:
            engine = create_async_engine(
                database_url,
                module=sqlite_inline.DBAPI,  # calls run on the loop: no thread hand-offs (sqlite_inline.py)
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
                pool_size=SQLITE_WRITER_CONNECTIONS,
                max_overflow=0,
                pool_timeout=pool.timeout_s * 3,
            )
        _configure_sqlite(engine, begin="BEGIN IMMEDIATE", pragmas=sqlite_writer_pragmas(synchronous))
        return engine
    return create_async_engine(
        database_url,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout_s,
        pool_pre_ping=pool.pre_ping,
    )


def make_read_engine(database_url: str, engine: AsyncEngine, pool: PoolSettings = PoolSettings()) -> AsyncEngine:
    """The engine of use cases that only read (GETs, ``/health``, events that never write).

    SQLite (a file): its own pool of connections in ``query_only`` mode whose transactions are deferred
    (a plain ``BEGIN``): in WAL mode they read a snapshot while a writer works, neither waits for the
    other. Anywhere else it is ``engine`` itself (PostgreSQL reads never wait for row locks).
    """
    database_url = normalize_database_url(database_url)
    if not is_sqlite(database_url) or _in_memory(database_url):
        return engine
    reader = create_async_engine(
        database_url,
        module=sqlite_inline.DBAPI,  # calls run on the loop: no thread hand-offs (see sqlite_inline.py)
        connect_args={"timeout": SQLITE_READ_BUSY_TIMEOUT_S},
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout_s,
    )
    _configure_sqlite(reader, begin="BEGIN", pragmas=SQLITE_READER_PRAGMAS)
    return reader


def _configure_sqlite(engine: AsyncEngine, *, begin: str, pragmas: tuple[str, ...]) -> None:
    """Pragmas on every new connection, and ``begin`` as each transaction's first statement.

    The DBAPI connection runs in autocommit (``isolation_level = None``) so that SQLAlchemy's
    ``begin`` event, not the driver, decides how a transaction starts.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


@dataclass(frozen=True, slots=True)
class Database:
    """A service's engines and their sessionmakers: ``engine`` for use cases that may write, ``read_engine``
    for those that only read (the same engine except on a SQLite file), and ``rows`` for a hot read of one
    statement (`RowReader`)."""

    engine: AsyncEngine
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]
    rows: RowReader

    @classmethod
    def open(
        cls, database_url: str, pool: PoolSettings = PoolSettings(), *, synchronous: Synchronous = "NORMAL"
    ) -> Database:
        engine = make_engine(database_url, pool, synchronous=synchronous)
        read_engine = make_read_engine(database_url, engine, pool)
        rows = RowReader(read_engine)
        return cls(engine, read_engine, make_sessionmaker(engine), make_sessionmaker(read_engine), rows)

    async def dispose(self) -> None:
        await self.rows.aclose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        await self.engine.dispose()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request from ``app.state.sessionmaker``; it only closes here, the service commits
    its own use case."""
    async with request.app.state.sessionmaker() as session:
        yield session
