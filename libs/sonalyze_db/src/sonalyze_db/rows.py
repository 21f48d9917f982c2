"""One read statement without the async machinery: the hot path of events that only read.

Through an ``AsyncSession`` a cached Core ``SELECT`` cost ~0.5 ms of CPU in process and an ORM load of a
lobby with its participants ~0.9 ms (greenlet switches around the pool checkout, begin, execute, fetch,
rollback and close; the ORM's loading), against ~0.01 ms for SQLite to run the statement itself.

On a SQLite file `RowReader` runs each statement on one synchronous connection in autocommit mode, inline
on the event loop, as `sqlite_inline` does and for the same reason: a WAL reader waits for no lock. Each
statement is its own read transaction, so one statement sees one consistent snapshot; a use case that
needs two statements to agree uses a session instead. 0.06-0.1 ms per statement with SQLAlchemy's type
processing (``bench/lobby_cpu.py`` measures the whole request). Anywhere else (PostgreSQL, an in-memory
database) the statement runs on a connection of the read engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Executable, Row, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

# what a reader waits for SQLite in the rare moment a checkpoint resets the log (as the read engine)
SQLITE_ROW_READER_BUSY_TIMEOUT_S: Final = 1
SQLITE_ROW_READER_PRAGMAS: Final = ("query_only=ON", "foreign_keys=ON")


class RowReader:
    """Runs one read statement and returns its rows (see the module's docstring for where it runs)."""

    def __init__(self, read_engine: AsyncEngine, sqlite_file_url: str | None) -> None:
        """``sqlite_file_url``: the database's URL when it is a SQLite file, else None."""
        self._read_engine = read_engine
        self._inline: Connection | None = None
        self._sqlite_file_url = sqlite_file_url

    def _inline_connection(self) -> Connection:
        if self._inline is None:
            assert self._sqlite_file_url is not None
            url = make_url(self._sqlite_file_url).set(drivername="sqlite+pysqlite")
            engine = create_engine(
                url,
                # the loop's thread is its only user, but tests may start a service's loop in another thread
                connect_args={"timeout": SQLITE_ROW_READER_BUSY_TIMEOUT_S, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
            )

            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # autocommit: each statement its own read transaction
                for pragma in SQLITE_ROW_READER_PRAGMAS:
                    dbapi_connection.execute(f"PRAGMA {pragma}")

            self._inline = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._inline

    async def all(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Sequence[Row[Any]]:
        """Every row of ``statement`` with ``parameters`` bound."""
        if self._sqlite_file_url is not None:
            return self._inline_connection().execute(statement, parameters).all()
        async with self._read_engine.connect() as connection:
            return (await connection.execute(statement, parameters)).all()

    def close(self) -> None:
        if self._inline is not None:
            engine = self._inline.engine
            self._inline.close()
            engine.dispose()
            self._inline = None
