"""`Migrations` and `run_env`: an Alembic environment inside a package, run from code and by the command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from sonalyze_db import Migrations, make_engine

ENV = """
from sqlalchemy import Column, Integer, MetaData, Table

from sonalyze_db import naming_metadata, run_env

metadata = naming_metadata()
Table("things", metadata, Column("id", Integer, primary_key=True))
run_env(metadata, lambda: __import__("os").environ["DATABASE_URL"])
"""
VERSION = '''
"""things"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("things")
'''


@pytest.fixture
def migrations(tmp_path: Path) -> Migrations:
    directory = tmp_path / "pkg" / "migrations"
    (directory / "versions").mkdir(parents=True)
    (directory / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\npath_separator = os\n")
    (directory / "env.py").write_text(textwrap.dedent(ENV))
    (directory / "versions" / "0001_things.py").write_text(VERSION)
    return Migrations(directory)


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}


async def test_upgrade_and_downgrade_from_code(
    migrations: Migrations, make_database_url: Callable[[str], Awaitable[str]]
) -> None:
    engine = make_engine(await make_database_url("db_migrations"))
    try:
        await migrations.upgrade(engine)
        await migrations.upgrade(engine)  # a second start finds nothing to do
        assert await tables(engine) == {"things"}
        await migrations.downgrade(engine)
        assert await tables(engine) == set()
    finally:
        await engine.dispose()


async def test_the_alembic_command_reads_the_url_from_the_environment(migrations: Migrations, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"  # a plain URL: run_env gives it the async driver
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "-m", "alembic", "-c", str(migrations.ini), "upgrade", "head"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    engine = make_engine(url)
    try:
        assert await tables(engine) == {"things"}
    finally:
        await engine.dispose()
