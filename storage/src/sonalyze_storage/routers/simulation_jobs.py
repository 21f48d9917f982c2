"""``/v1/simulation-jobs``: one simulation request, keyed by its client-supplied ``id`` (made when absent)."""

from __future__ import annotations

from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import SimulationJob
from sonalyze_storage.schemas import SimulationJobCreate, SimulationJobFilters, SimulationJobRead, SimulationJobUpdate

ENTITY = Entity(
    name="simulation job",
    path="simulation-jobs",
    model=SimulationJob,
    create=SimulationJobCreate,
    update=SimulationJobUpdate,
    read=SimulationJobRead,
    filters=SimulationJobFilters,
    natural_key=("id",),
)

router = crud_router(ENTITY)
