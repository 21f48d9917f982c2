"""Database engines and sessions (SQLite by default, PostgreSQL through asyncpg).

Two engines: `make_engine` for use cases that may write, `make_read_engine` for those that only read.
On SQLite (WAL) they differ: writers take turns on one connection, readers never wait for them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from fastapi import Request
from sqlalchemy import event, exc, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from sonalyze_lobby import sqlite_inline
from sonalyze_protocol.errors import ServiceUnavailable

# the writer waits this long for SQLite's write lock, which only another process (a migration run by
# hand) can hold: in this process writers take turns on one connection before they ask for it
SQLITE_BUSY_TIMEOUT_S = 5
# a WAL reader waits for no lock; this only bounds the rare moment a checkpoint resets the log
SQLITE_READ_BUSY_TIMEOUT_S = 1
# SQLite's writer engine holds one connection: writers queue for it in asyncio, FIFO, instead of
# polling SQLite's busy handler; readers have their own connections and never wait for it (WAL)
SQLITE_WRITER_CONNECTIONS = 1

P = ParamSpec("P")
T = TypeVar("T")
logger = logging.getLogger("sonalyze.lobby.db")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Connections of an engine's pool (PostgreSQL, and SQLite's readers): ``size`` kept, ``overflow``
    more under load, ``timeout_s`` to wait for one before the request fails as unavailable."""

    size: int = 20
    overflow: int = 10
    timeout_s: float = 10.0


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def _in_memory(database_url: str) -> bool:
    return make_url(database_url).database in (None, "", ":memory:")


def make_engine(database_url: str, pool: PoolSettings = PoolSettings()) -> AsyncEngine:
    """The engine every use case starts from, writers included.

    SQLite: one connection, every transaction ``BEGIN IMMEDIATE``, so writers are serialised by the
    pool and a read-then-write use case never meets another writer halfway. PostgreSQL: a pool of
    ``pool`` connections, no ping per checkout (a dropped connection invalidates the pool instead).
    """
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
        _configure_sqlite(engine, begin="BEGIN IMMEDIATE", pragmas=SQLITE_WRITER_PRAGMAS)
        return engine
    return create_async_engine(
        database_url, pool_size=pool.size, max_overflow=pool.overflow, pool_timeout=pool.timeout_s
    )


def make_read_engine(database_url: str, engine: AsyncEngine, pool: PoolSettings = PoolSettings()) -> AsyncEngine:
    """The engine of use cases that only read (``lobby.get``, HTTP GETs, ``/health``).

    SQLite (a file): its own pool of connections in ``query_only`` mode whose transactions are deferred
    (a plain ``BEGIN``): in WAL mode they read a snapshot while a writer works, neither waits for the
    other. Anywhere else it is ``engine`` itself (PostgreSQL reads never wait for row locks).
    """
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


# WAL: readers keep reading while one writer writes. synchronous=NORMAL: in WAL mode a commit is
# durable against a crash of the process, and the database stays consistent after a power loss, which
# may lose the last commits; that trade buys commits without an fsync each (a lobby can be reopened).
SQLITE_WRITER_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
SQLITE_READER_PRAGMAS = ("journal_mode=WAL", "foreign_keys=ON", "query_only=ON")


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


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; it only closes here, the service commits its own use case."""
    async with request.app.state.sessionmaker() as session:
        yield session


async def database_status(engine: AsyncEngine) -> str:
    """``"ok"`` when a trivial query succeeds, else the error in one line."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable" here
        return f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return "ok"


# what a lost or refused database connection surfaces as (asyncpg may raise OSError before SQLAlchemy wraps it)
DATABASE_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    OSError,
)


def database_unavailable(error: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"database unavailable: {type(error).__name__}")


def guard_database(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Turn a database outage inside ``func`` into `ServiceUnavailable` (503) instead of an internal error."""

    @functools.wraps(func)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except DATABASE_DOWN_ERRORS as error:
            logger.warning("database unavailable in %s: %s", func.__name__, error)
            raise database_unavailable(error) from None

    return guarded
