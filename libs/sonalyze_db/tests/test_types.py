"""`UTCDateTime` (one rule: naive means UTC) and the naming convention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, ForeignKey, ForeignKeyConstraint, Integer, String, Table, UniqueConstraint, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from sonalyze_db import UTCDateTime, make_engine, naming_metadata

AWARE_UTC = datetime(2026, 12, 2, 15, 4, 5, 123456, tzinfo=UTC)
NAIVE = AWARE_UTC.replace(tzinfo=None)
AWARE_PLUS_2 = AWARE_UTC.astimezone(timezone(timedelta(hours=2)))


class TestBind:
    @pytest.mark.parametrize("value", [AWARE_UTC, NAIVE, AWARE_PLUS_2], ids=["utc", "naive", "plus-2"])
    def test_every_form_of_one_instant_is_stored_the_same(self, value: datetime) -> None:
        assert UTCDateTime().process_bind_param(value, postgresql.dialect()) == AWARE_UTC
        assert UTCDateTime().process_bind_param(value, sqlite.dialect()) == NAIVE

    def test_sqlite_text_is_what_both_services_always_wrote(self) -> None:
        """The lobby bound aware UTC, storage naive UTC: SQLite's text was, and stays, the same."""
        to_text = UTCDateTime().impl.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
        written = to_text(UTCDateTime().process_bind_param(AWARE_UTC, sqlite.dialect()))
        assert written == to_text(AWARE_UTC) == to_text(NAIVE) == "2026-12-02 15:04:05.123456"

    def test_read_back_is_aware_utc(self) -> None:
        assert UTCDateTime().process_result_value(NAIVE, sqlite.dialect()) == AWARE_UTC
        assert UTCDateTime().process_result_value(AWARE_PLUS_2, postgresql.dialect()).tzinfo is UTC  # type: ignore[union-attr]
        assert UTCDateTime().process_bind_param(None, sqlite.dialect()) is None


@pytest.fixture
async def engine(make_database_url: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await make_database_url("db_types"))
    yield engine
    await engine.dispose()


async def test_round_trip_on_the_test_database(engine: AsyncEngine) -> None:
    metadata = naming_metadata()
    table = Table("stamps", metadata, Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(table.insert(), [{"id": 1, "at": NAIVE}, {"id": 2, "at": AWARE_PLUS_2}])
        # a row written as naive text by hand, as an older storage wrote it on SQLite
        if engine.dialect.name == "sqlite":
            await connection.execute(text("INSERT INTO stamps VALUES (3, '2026-12-02 15:04:05.123456')"))
    async with engine.connect() as connection:
        read = (await connection.execute(table.select().order_by(table.c.id))).all()
    assert {row.at for row in read} == {AWARE_UTC}
    assert all(row.at.tzinfo is UTC for row in read)


def test_naming_convention_names_keys_after_all_their_columns() -> None:
    """One-column foreign keys keep the lobby's names, the storage's two-column key keeps its own."""
    metadata = naming_metadata()
    Table("lobbies", metadata, Column("id", String(8), primary_key=True))
    Table(
        "measurements",
        metadata,
        Column("id", String(8), primary_key=True),
        Column("job_id", String(8)),
        Column("upload_name", String(8)),
        UniqueConstraint("job_id", "upload_name"),
    )
    outputs = Table(
        "outputs",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("lobby_id", String(8), ForeignKey("lobbies.id"), index=True),
        Column("job_id", String(8)),
        Column("upload_name", String(8)),
        ForeignKeyConstraint(["job_id", "upload_name"], ["measurements.job_id", "measurements.upload_name"]),
    )
    names = {c.name for c in outputs.constraints} | {i.name for i in outputs.indexes}
    assert names == {
        "pk_outputs",
        "fk_outputs_lobby_id_lobbies",
        "fk_outputs_job_id_upload_name_measurements",
        "ix_outputs_lobby_id",
    }
    assert {c.name for c in metadata.tables["measurements"].constraints} == {
        "pk_measurements",
        "uq_measurements_job_id_upload_name",
    }
