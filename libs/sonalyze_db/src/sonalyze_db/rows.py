"""One read statement without the async machinery: the hot path of events that only read.

Through an ``AsyncSession`` a cached Core ``SELECT`` cost ~0.5 ms of CPU in process and an ORM load of a
lobby with its participants ~0.9 ms (greenlet switches around the pool checkout, begin, execute, fetch,
rollback and close; the ORM's loading), against ~0.01 ms for SQLite to run the statement itself.

On a SQLite file `RowReader` runs each statement on one sqlite3 connection of its own in autocommit mode,
inline on the event loop, as `sqlite_inline` does and for the same reason: a WAL reader waits for no lock.
Each statement is its own read transaction, so one statement sees one consistent snapshot; a use case that
needs two statements to agree uses a session instead. The statement is compiled once for SQLite and its
values go through the column types' own bind and result processors (``TypeEngine.bind_processor`` /
``result_processor``), so the rows are what SQLAlchemy would return: 0.03 ms for a miss, 0.09 ms for a
lobby with two participants, against 0.10 and 0.21 ms through a synchronous SQLAlchemy connection. Anywhere
else (PostgreSQL, an in-memory database) the statement runs on a connection of the read engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Executable, make_url
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Row = tuple[Any, ...]
Processor = Callable[[Any], Any] | None

# what a reader waits for SQLite in the rare moment a checkpoint resets the log (as the read engine)
SQLITE_ROW_READER_BUSY_TIMEOUT_S: Final = 1
SQLITE_ROW_READER_PRAGMAS: Final = ("query_only=ON", "foreign_keys=ON")
# statements are meant to be built once (module constants); more than this many distinct ones and the
# compiled forms are dropped and rebuilt as they come
MAX_PREPARED: Final = 64


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A statement compiled for SQLite: its SQL, its parameters in order with their bind processors and
    literal values, and one result processor per column."""

    sql: str
    parameters: tuple[tuple[str, Processor], ...]
    literal_values: Mapping[str, Any]
    result_processors: tuple[Processor, ...]


def _prepare(statement: Executable, dialect: SQLiteDialect_pysqlite) -> _Prepared:
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
    """Runs one read statement and returns its rows as tuples, in the statement's column order (see the
    module's docstring for where it runs)."""

    def __init__(self, read_engine: AsyncEngine, sqlite_file_url: str | None) -> None:
        """``sqlite_file_url``: the database's URL when it is a SQLite file, else None."""
        self._read_engine = read_engine
        self._sqlite_path = make_url(sqlite_file_url).database if sqlite_file_url is not None else None
        self._connection: sqlite3.Connection | None = None
        self._dialect = SQLiteDialect_pysqlite()
        self._prepared: dict[Executable, _Prepared] = {}

    async def all(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        """Every row of ``statement`` with ``parameters`` bound."""
        if self._sqlite_path is not None:
            return self._inline(statement, parameters or {})
        async with self._read_engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(statement, parameters))]

    def _inline(self, statement: Executable, parameters: Mapping[str, Any]) -> list[Row]:
        prepared = self._prepared.get(statement)
        if prepared is None:
            if len(self._prepared) >= MAX_PREPARED:
                self._prepared.clear()
            prepared = self._prepared[statement] = _prepare(statement, self._dialect)
        values = {**prepared.literal_values, **parameters}
        arguments = [values[name] if bind is None else bind(values[name]) for name, bind in prepared.parameters]
        try:
            cursor = self._sqlite().execute(prepared.sql, arguments)
            try:
                rows = cursor.fetchall()
            finally:
                cursor.close()  # ends the statement's read transaction even if fetching failed
        except sqlite3.Error as exc:  # as SQLAlchemy raises it: an outage maps to service_unavailable (errors.py)
            raise DBAPIError.instance(prepared.sql, arguments, exc, sqlite3.Error) from exc
        processors = prepared.result_processors
        if not any(processors):
            return rows
        return [
            tuple(value if p is None else p(value) for p, value in zip(processors, row, strict=True)) for row in rows
        ]

    def _sqlite(self) -> sqlite3.Connection:
        if self._connection is None:
            assert self._sqlite_path is not None
            # the loop's thread is its only user, but tests may run a service's loop in another thread
            connection = sqlite3.connect(
                self._sqlite_path,
                timeout=SQLITE_ROW_READER_BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit: each statement its own read transaction
                check_same_thread=False,
            )
            for pragma in SQLITE_ROW_READER_PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
