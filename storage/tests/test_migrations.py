"""The schema comes only from Alembic: upgrade, downgrade and upgrade again on an empty database."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from sonalyze_db import make_engine
from sonalyze_db.migrations import database_constraint_names, metadata_constraint_names
from sonalyze_storage import migrations
from sonalyze_storage.models import Base

ALEMBIC_DIR = migrations.MIGRATIONS.directory
EXPECTED_TABLES = set(Base.metadata.tables)


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def alembic_cli(database_url: str, *args: str) -> str:
    """Run the ``alembic`` command as a developer would, from the directory of its ``alembic.ini``."""
    env = {**os.environ, "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", *args,
        cwd=ALEMBIC_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


class TestAlembicCommand:
    async def test_upgrade_downgrade_upgrade_on_an_empty_database(
        self, make_database_url: Callable[[str], Awaitable[str]]
    ) -> None:
        url = await make_database_url("storage_migrations")
        engine = make_engine(url)
        try:
            assert await tables(engine) == set()
            await alembic_cli(url, "upgrade", "head")
            assert await tables(engine) == EXPECTED_TABLES
            await alembic_cli(url, "downgrade", "base")
            assert await tables(engine) == set()
            await alembic_cli(url, "upgrade", "head")
            assert await tables(engine) == EXPECTED_TABLES
            # the models and the migrations describe the same schema
            assert "No new upgrade operations detected" in await alembic_cli(url, "check")
        finally:
            await engine.dispose()


class TestProgrammaticMigrations:
    async def test_the_app_path_upgrades_and_downgrades_on_its_own_connection(
        self, make_database_url: Callable[[str], Awaitable[str]]
    ) -> None:
        engine = make_engine(await make_database_url("storage_migrations_app"))
        try:
            await migrations.upgrade(engine)
            await migrations.upgrade(engine)  # a second start finds nothing to do
            assert await tables(engine) == EXPECTED_TABLES
            await migrations.downgrade(engine)
            assert await tables(engine) == set()
        finally:
            await engine.dispose()

    async def test_constraints_keep_their_names_under_the_shared_convention(
        self, make_database_url: Callable[[str], Awaitable[str]]
    ) -> None:
        """sonalyze_db's naming convention gives the migrated database's names: none to rename."""
        engine = make_engine(await make_database_url("storage_names"))
        try:
            await migrations.upgrade(engine)
            names = await database_constraint_names(engine)
        finally:
            await engine.dispose()
        assert {"fk_analysis_outputs_job_id_upload_name_measurements", "fk_participants_lobby_id_lobbies"} <= names
        assert metadata_constraint_names(Base.metadata) <= names
