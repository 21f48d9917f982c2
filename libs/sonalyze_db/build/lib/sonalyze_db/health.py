"""The database part of a service's ``/health``."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def database_status(engine: AsyncEngine) -> str:
    """``"ok"`` when a trivial query succeeds, else the error in one line."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable" here
        return f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return "ok"
