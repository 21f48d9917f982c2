"""aiosqlite's interface without its thread, for the SQLite engines of `engine.py`: each call runs inline.

aiosqlite runs every call in a worker thread: a ``lobby.get`` cost ~9 hand-offs between the event loop
and that thread (begin, cursor, execute, fetch, close, commit, reset), each waiting for the GIL; on a
busy 2-core machine that was most of the event's time. A statement on a few rows of an indexed table
takes tens of microseconds, so it runs directly on the loop instead. That is safe only where SQLite
never makes a call wait for a lock: WAL readers wait for none, and writers take turns on the one
writer connection in asyncio before they ask SQLite for the write lock (engine.py), so only another
process could hold it, bounded by the busy timeout. With ``synchronous=NORMAL`` (the lobby) commits do
not fsync; a WAL checkpoint every ~1000 pages does, for a few milliseconds.

Use: ``create_async_engine("sqlite+aiosqlite:///...", module=DBAPI)``; SQLAlchemy's aiosqlite dialect
adapts it exactly as it adapts aiosqlite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import types
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi


class Cursor:
    """An aiosqlite cursor whose coroutines finish without suspending."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _InlineQueue:
    """Stands in for aiosqlite's request queue, which SQLAlchemy uses to set ``isolation_level``."""

    __slots__ = ()

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class Connection:
    """An aiosqlite connection over a plain `sqlite3.Connection` used from the event loop's thread."""

    def __init__(self, database: str, **kwargs: Any) -> None:
        kwargs["check_same_thread"] = False  # the pool may close it from a finaliser
        self._conn = sqlite3.connect(database, **kwargs)
        self._connection: sqlite3.Connection | None = self._conn  # SQLAlchemy checks it before commit/rollback
        self._tx = _InlineQueue()
        self._thread = types.SimpleNamespace(daemon=True)  # SQLAlchemy marks aiosqlite's thread a daemon

    def __await__(self) -> Any:  # ``await aiosqlite.connect(...)``
        if False:  # pragma: no cover - makes this a generator
            yield
        return self

    @property
    def isolation_level(self) -> str | None:
        level: str | None = self._conn.isolation_level
        return level

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def connect(database: str, **kwargs: Any) -> Connection:
    return Connection(database, **kwargs)


_module = types.ModuleType("sonalyze_db.sqlite_inline.aiosqlite")
_module.connect = connect  # type: ignore[attr-defined]
_module.Connection = Connection  # type: ignore[attr-defined]
for _name in ("DatabaseError", "Error", "IntegrityError", "NotSupportedError", "OperationalError",
              "ProgrammingError", "sqlite_version", "sqlite_version_info"):  # fmt: skip
    setattr(_module, _name, getattr(sqlite3, _name))

# what ``create_async_engine(..., module=DBAPI)`` takes in place of the adapted aiosqlite module
DBAPI = AsyncAdapt_aiosqlite_dbapi(_module, sqlite3)
