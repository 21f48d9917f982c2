"""Database engine and sessions (SQLite by default, PostgreSQL through asyncpg)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from fastapi import Request
from sonalyze_protocol.errors import ServiceUnavailable
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_S = 30

P = ParamSpec("P")
T = TypeVar("T")
logger = logging.getLogger("sonalyze.lobby.db")


def make_engine(database_url: str) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _serialise_sqlite_writes(engine)
        return engine
    return create_async_engine(database_url, pool_pre_ping=True)


def _serialise_sqlite_writes(engine: AsyncEngine) -> None:
    """Every SQLite transaction starts with ``BEGIN IMMEDIATE``.

    A deferred transaction that reads and then writes can deadlock with another one doing the same
    (SQLITE_BUSY at once, the busy timeout does not help); taking the write lock up front makes
    concurrent use cases queue instead. WAL keeps readers of other connections unblocked.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" below decide
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


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
