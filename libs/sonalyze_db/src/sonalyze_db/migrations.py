"""Alembic migrations shipped inside a service's package, run from code (on start, and in tests).

A service keeps ``sonalyze_<service>/migrations/`` with ``alembic.ini``, ``env.py``, ``script.py.mako`` and
``versions/``, installed as package data, and declares::

    MIGRATIONS = Migrations(Path(__file__).parent)        # in migrations/__init__.py
    await MIGRATIONS.upgrade(engine)                      # in the lifespan, when RUN_MIGRATIONS

Its ``env.py`` is one call: ``run_env(Base.metadata, lambda: Settings().database_url)``. The ``alembic``
command works too: ``alembic -c <package>/migrations/alembic.ini upgrade head`` (``DATABASE_URL`` from the
environment).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import ForeignKeyConstraint, MetaData, UniqueConstraint, inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sonalyze_db.engine import normalize_database_url


@dataclass(frozen=True, slots=True)
class Migrations:
    """A service's Alembic environment: the directory holding its ``alembic.ini`` and ``env.py``."""

    directory: Path

    @property
    def ini(self) -> Path:
        return self.directory / "alembic.ini"

    def config(self, database_url: str | None = None) -> Config:
        config = Config(str(self.ini))
        config.set_main_option("script_location", str(self.directory))
        config.attributes["configure_logger"] = False  # keep the service's own log format
        if database_url is not None:
            config.attributes["database_url"] = database_url
        return config

    def _run(self, connection: Connection, direction: str, revision: str) -> None:
        config = self.config()
        config.attributes["connection"] = connection
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async def upgrade(self, engine: AsyncEngine, revision: str = "head") -> None:
        """Migrate the engine's database to ``revision`` over one of its connections, in one transaction."""
        async with engine.begin() as connection:
            await connection.run_sync(self._run, "upgrade", revision)

    async def downgrade(self, engine: AsyncEngine, revision: str = "base") -> None:
        async with engine.begin() as connection:
            await connection.run_sync(self._run, "downgrade", revision)


def run_env(target_metadata: MetaData, default_url: Callable[[], str]) -> None:
    """The body of every service's ``env.py`` (async; batch mode so SQLite can alter tables).

    Given a connection in ``config.attributes["connection"]`` (the app at start, the tests) it migrates on
    that connection; otherwise it opens one from ``config.attributes["database_url"]`` or ``default_url()``
    (the service's ``DATABASE_URL``).
    """
    config = context.config

    def database_url() -> str:
        return normalize_database_url(config.attributes.get("database_url") or default_url())

    def configure(**kwargs: Any) -> None:
        context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs)

    def run_on(connection: Connection) -> None:
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(database_url(), poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(run_on)
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    ini = config.config_file_name
    if (
        ini is not None
        and config.file_config.has_section("loggers")
        and config.attributes.get("configure_logger", True)
    ):
        fileConfig(ini, disable_existing_loggers=False)
    asyncio.run(run_async())


async def database_constraint_names(engine: AsyncEngine) -> set[str]:
    """Foreign keys, unique constraints and indexes of a migrated database, by name (alembic's table aside).

    With :func:`metadata_constraint_names` a test sees that the migrations name every key as the models do.
    """

    def read(connection: Connection) -> set[str]:
        inspector = inspect(connection)
        names: set[str] = set()
        for table in set(inspector.get_table_names()) - {"alembic_version"}:
            names |= {str(fk["name"]) for fk in inspector.get_foreign_keys(table)}
            names |= {str(uq["name"]) for uq in inspector.get_unique_constraints(table)}
            names |= {str(ix["name"]) for ix in inspector.get_indexes(table)}
        return names

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def metadata_constraint_names(metadata: MetaData) -> set[str]:
    """The names the naming convention gives the models' foreign keys, unique constraints and indexes."""
    names: set[str] = set()
    for table in metadata.tables.values():
        names |= {str(c.name) for c in table.constraints if isinstance(c, ForeignKeyConstraint | UniqueConstraint)}
        names |= {str(i.name) for i in table.indexes}
    return names
