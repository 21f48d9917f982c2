"""The lobby's Alembic migrations, shipped inside the package (`sonalyze_db.migrations`).

From code: ``await upgrade(engine)`` (on start when RUN_MIGRATIONS, and in tests). By hand:
``alembic -c lobby/src/sonalyze_lobby/migrations/alembic.ini upgrade head`` with DATABASE_URL set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from sonalyze_db import Migrations

MIGRATIONS: Final = Migrations(Path(__file__).resolve().parent)


def alembic_config(database_url: str | None = None) -> Config:
    return MIGRATIONS.config(database_url)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the engine's database to ``revision`` over one of its connections."""
    await MIGRATIONS.upgrade(engine, revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await MIGRATIONS.downgrade(engine, revision)
