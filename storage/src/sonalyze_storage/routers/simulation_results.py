"""``/v1/simulation-results``: results of a simulation job, keyed by a client-supplied ``id``; the job must exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_protocol.errors import Conflict
from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import SimulationJob, SimulationResult
from sonalyze_storage.schemas import (
    SimulationResultCreate,
    SimulationResultFilters,
    SimulationResultRead,
    SimulationResultUpdate,
)


async def require_job(session: AsyncSession, data: dict[str, Any]) -> dict[str, Any]:
    if await session.get(SimulationJob, data["job_id"]) is None:
        raise Conflict(f"simulation job '{data['job_id']}' is not recorded (record the job first)")
    return data


ENTITY = Entity(
    name="simulation result",
    path="simulation-results",
    model=SimulationResult,
    create=SimulationResultCreate,
    update=SimulationResultUpdate,
    read=SimulationResultRead,
    filters=SimulationResultFilters,
    natural_key=("id",),
    prepare=require_job,
)

router = crud_router(ENTITY)
