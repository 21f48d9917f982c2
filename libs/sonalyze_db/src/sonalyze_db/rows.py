"""One read statement without the async machinery: the hot path of events that only read.

Through an ``AsyncSession`` a cached Core ``SELECT`` cost ~0.5 ms of CPU in process and an ORM load of a
lobby with its participants ~0.9 ms (greenlet switches around the pool checkout, begin, execute, fetch,
rollback and close; the ORM's loading), against ~0.01 ms for SQLite to run the statement itself.

`RowReader` compiles each statement once for the database's dialect and runs it on the driver itself,
its values passed through the column types' own bind and result processors (``TypeEngine.bind_processor``
/ ``result_processor``), so the rows are what SQLAlchemy would return:

- a SQLite file: one sqlite3 connection of its own in autocommit mode, inline on the event loop, as
  `sqlite_inline` does and for the same reason: a WAL reader waits for no lock. 0.03 ms for a miss, 0.09 ms
  for a lobby with two participants, against 0.10 and 0.21 ms through a synchronous SQLAlchemy connection;
- PostgreSQL through asyncpg: a small asyncpg pool of its own (`PG_ROW_READER_CONNECTIONS`), read-only,
  with the JSON codecs SQLAlchemy's asyncpg dialect installs; a lobby read cost 1.23 ms of the lobby's CPU
  per request through the read engine;
- anything else (an in-memory database, a PostgreSQL URL with query options): a connection of the read engine.

Each statement runs outside any transaction, so it sees one consistent snapshot on its own; a use case
that needs two statements to agree uses a session instead.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy import URL, Dialect, Executable
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Row = tuple[Any, ...]
Processor = Callable[[Any], Any] | None

# every SQLite reader, this one and the read engine's (engine.py): a WAL reader waits for no lock; the timeout
# only bounds the rare moment a checkpoint resets the log
SQLITE_READ_BUSY_TIMEOUT_S: Final = 1
SQLITE_READ_PRAGMAS: Final = ("foreign_keys=ON", "query_only=ON")
# one statement holds a connection for a fraction of a millisecond: a few serve thousands of reads a second
# without crowding PostgreSQL's connection limit beside the engine's pool
PG_ROW_READER_CONNECTIONS: Final = 4
PG_CONNECT_TIMEOUT_S: Final = 10.0
# statements are meant to be built once (module constants); more than this many distinct ones and the
# compiled forms are dropped and rebuilt as they come
MAX_PREPARED: Final = 64
# asyncpg's errors that mean the database cannot be reached (an outage: service_unavailable, errors.py)
_PG_UNREACHABLE: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A statement compiled for one dialect: its SQL, its parameters in order with their bind processors
    and literal values, and one result processor per column."""

    sql: str
    parameters: tuple[tuple[str, Processor], ...]
    literal_values: Mapping[str, Any]
    result_processors: tuple[Processor, ...]

    def arguments(self, given: Mapping[str, Any]) -> list[Any]:
        values = {**self.literal_values, **given}
        return [values[name] if bind is None else bind(values[name]) for name, bind in self.parameters]

    def rows(self, raw: list[Any]) -> list[Row]:
        processors = self.result_processors
        if not any(processors):
            return [tuple(row) for row in raw]
        return [
            tuple(value if p is None else p(value) for p, value in zip(processors, row, strict=True)) for row in raw
        ]


def _prepare(statement: Executable, dialect: Dialect) -> _Prepared:
    if not isinstance(statement, ClauseElement):
        raise TypeError(f"RowReader reads SQL expressions, not {type(statement).__name__}")
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    parameters = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup or ()
    )
    columns = getattr(statement, "selected_columns", ())
    processors = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    return _Prepared(compiled.string, parameters, dict(compiled.params), processors)


class RowReader:
    """Runs one read statement and returns its rows as tuples in the statement's column order (see the
    module's docstring for where it runs)."""

    def __init__(self, read_engine: AsyncEngine) -> None:
        self._read_engine = read_engine
        url = read_engine.url
        self._sqlite_path: str | None = None
        self._pg_url: URL | None = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sqlite_path = url.database
            self._dialect: Dialect = SQLiteDialect_pysqlite()
        elif url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg" and not url.query:
            self._pg_url = url
            self._dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        self._prepared: dict[Executable, _Prepared] = {}
        self._sqlite: sqlite3.Connection | None = None
        self._pg_pool: asyncpg.Pool | None = None
        self._pg_pool_lock = asyncio.Lock()

    async def all(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        """Every row of ``statement`` with ``parameters`` bound."""
        if self._sqlite_path is not None:
            return self._sqlite_rows(self._prepare(statement), parameters or {})
        if self._pg_url is not None:
            return await self._pg_rows(self._prepare(statement), parameters or {})
        async with self._read_engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(statement, parameters))]

    def _prepare(self, statement: Executable) -> _Prepared:
        prepared = self._prepared.get(statement)
        if prepared is None:
            if len(self._prepared) >= MAX_PREPARED:
                self._prepared.clear()
            prepared = self._prepared[statement] = _prepare(statement, self._dialect)
        return prepared

    def _sqlite_rows(self, prepared: _Prepared, parameters: Mapping[str, Any]) -> list[Row]:
        arguments = prepared.arguments(parameters)
        try:
            cursor = self._sqlite_connection().execute(prepared.sql, arguments)
            try:
                raw = cursor.fetchall()
            finally:
                cursor.close()  # ends the statement's read transaction even if fetching failed
        except sqlite3.Error as exc:  # as SQLAlchemy raises it: an outage maps to service_unavailable
            raise DBAPIError.instance(prepared.sql, arguments, exc, sqlite3.Error) from exc
        return prepared.rows(raw)

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self._sqlite_path is not None
            # the loop's thread is its only user, but tests may run a service's loop in another thread
            connection = sqlite3.connect(
                self._sqlite_path,
                timeout=SQLITE_READ_BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit: each statement its own read transaction
                check_same_thread=False,
            )
            for pragma in SQLITE_READ_PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            self._sqlite = connection
        return self._sqlite

    async def _pg_rows(self, prepared: _Prepared, parameters: Mapping[str, Any]) -> list[Row]:
        arguments = prepared.arguments(parameters)
        try:
            pool = await self._pg_connections()
            async with pool.acquire() as connection:
                raw = await connection.fetch(prepared.sql, *arguments)
        except _PG_UNREACHABLE as exc:
            raise OperationalError(prepared.sql, arguments, exc) from exc
        except asyncpg.PostgresError as exc:
            raise DBAPIError(prepared.sql, arguments, exc) from exc
        return prepared.rows(raw)

    async def _pg_connections(self) -> asyncpg.Pool:
        if self._pg_pool is not None:
            return self._pg_pool
        async with self._pg_pool_lock:  # one pool, however many reads arrive before it exists
            if self._pg_pool is None:
                url = self._pg_url
                assert url is not None
                self._pg_pool = await asyncpg.create_pool(
                    host=url.host, port=url.port, user=url.username, password=url.password, database=url.database,
                    min_size=1, max_size=PG_ROW_READER_CONNECTIONS, timeout=PG_CONNECT_TIMEOUT_S,
                    init=_json_codecs, server_settings={"default_transaction_read_only": "on"},  # as query_only
                    reset=_nothing_to_reset,
                )  # fmt: skip
            return self._pg_pool

    async def aclose(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg_pool is not None:
            pool, self._pg_pool = self._pg_pool, None
            await pool.close()


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it came: it only ran one read statement, outside any
    transaction, so asyncpg's default reset (``RESET ALL``, ``UNLISTEN *``, ... : a second round trip per
    read) has nothing to undo."""


async def _json_codecs(connection: asyncpg.Connection) -> None:
    """JSON decoded by the driver, as SQLAlchemy's asyncpg dialect sets up every connection (its JSON types
    then have no result processor of their own)."""
    await connection.set_type_codec(
        "json", encoder=str.encode, decoder=lambda raw: json.loads(raw.decode()), schema="pg_catalog", format="binary"
    )
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda raw: json.loads(raw[1:].decode()),
        schema="pg_catalog",
        format="binary",
    )
