"""Alembic: head matches the models, every migration is reversible, the app migrates on start."""

from __future__ import annotations

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import inspect

from sonalyze_db import make_engine
from sonalyze_db.migrations import database_constraint_names, metadata_constraint_names
from sonalyze_lobby import migrations
from sonalyze_lobby.main import create_app
from sonalyze_lobby.models import Base
from sonalyze_lobby.settings import Settings


async def _tables(engine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}


async def _diff(engine) -> list:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
        )


class TestMigrations:
    async def test_head_matches_models_and_downgrades_cleanly(self, make_database_url) -> None:
        engine = make_engine(await make_database_url("lobby_mig"))
        try:
            await migrations.upgrade(engine)
            assert await _tables(engine) >= {"lobbies", "participants", "lobby_events"}
            assert await _diff(engine) == []
            await migrations.downgrade(engine, "base")
            assert await _tables(engine) == set()
            await migrations.upgrade(engine)
            assert await _diff(engine) == []
        finally:
            await engine.dispose()

    async def test_constraints_keep_their_names_under_the_shared_convention(self, make_database_url) -> None:
        """sonalyze_db's naming convention gives the migrated database's names: none to rename."""
        engine = make_engine(await make_database_url("lobby_names"))
        try:
            await migrations.upgrade(engine)
            names = await database_constraint_names(engine)
        finally:
            await engine.dispose()
        assert {"fk_participants_lobby_id_lobbies", "fk_lobby_events_lobby_id_lobbies"} <= names
        assert metadata_constraint_names(Base.metadata) <= names

    def test_history_is_linear_and_named_by_date(self) -> None:
        script = ScriptDirectory.from_config(migrations.alembic_config())
        assert len(script.get_heads()) == 1
        for revision in script.walk_revisions():
            assert revision.revision[:4].isdigit(), revision.revision
            assert revision.module.downgrade is not None


class TestMigrateOnStart:
    async def test_fresh_database_is_ready_after_startup(self, make_database_url) -> None:
        settings = Settings(database_url=await make_database_url("lobby_start"), run_migrations=True,
                            internal_auth_token="t", log_level="WARNING")  # fmt: skip
        app = create_app(settings)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lobby") as client:
                health = await client.get("/health")
                created = await client.post("/lobbies", headers={"X-Device-Id": "d1", "X-Internal-Token": "t"})
        assert health.json()["database"] == "ok"
        assert created.status_code == 201
