"""Alembic environment of the storage service (`sonalyze_db.migrations.run_env`: async, batch mode for SQLite).

URL: ``config.attributes["database_url"]``, else Settings' DATABASE_URL. When the app migrates on start it
hands over an open connection in ``config.attributes["connection"]`` instead.
"""

from __future__ import annotations

from sonalyze_db import run_env
from sonalyze_storage.models import Base
from sonalyze_storage.settings import Settings

run_env(Base.metadata, lambda: Settings().database_url)
