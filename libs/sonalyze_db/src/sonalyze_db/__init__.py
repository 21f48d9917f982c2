"""Sonalyze's database stack, shared by lobby and storage (see README.md)."""

from sonalyze_db.engine import (
    Database,
    PoolSettings,
    get_session,
    is_sqlite,
    make_engine,
    make_read_engine,
    make_sessionmaker,
    normalize_database_url,
)
from sonalyze_db.errors import (
    DATABASE_DOWN_ERRORS,
    database_unavailable,
    guard_database,
    guard_handlers,
    install_outage_handlers,
    is_foreign_key_violation,
    is_unique_violation,
)
from sonalyze_db.health import database_status
from sonalyze_db.migrations import Migrations, run_env
from sonalyze_db.rows import RowReader
from sonalyze_db.types import NAMING_CONVENTION, UTCDateTime, naming_metadata, utcnow

__all__ = [
    "DATABASE_DOWN_ERRORS",
    "NAMING_CONVENTION",
    "Database",
    "Migrations",
    "PoolSettings",
    "RowReader",
    "UTCDateTime",
    "database_status",
    "database_unavailable",
    "get_session",
    "guard_database",
    "guard_handlers",
    "install_outage_handlers",
    "is_foreign_key_violation",
    "is_sqlite",
    "is_unique_violation",
    "make_engine",
    "make_read_engine",
    "make_sessionmaker",
    "naming_metadata",
    "normalize_database_url",
    "run_env",
    "utcnow",
]
