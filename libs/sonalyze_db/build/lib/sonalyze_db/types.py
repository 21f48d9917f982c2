"""Column types and names every service's schema shares: `UTCDateTime` and `NAMING_CONVENTION`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Constraint and index names. A foreign key is named after all its columns (``column_0_N_name``): for a
# one-column key that is the same name as ``column_0_name``, which the lobby used, and the storage's
# two-column key keeps its name, so no existing database has a constraint to rename.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def naming_metadata() -> MetaData:
    """A `MetaData` for a service's declarative base, with the shared naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp with time zone, stored in UTC and always read back aware, in UTC.

    A naive datetime is taken as UTC (what SQLite has always stored and what both services always read
    back). PostgreSQL keeps ``timestamptz``; SQLite stores text without a zone, so values are bound as
    naive UTC there, the text both services have always written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
