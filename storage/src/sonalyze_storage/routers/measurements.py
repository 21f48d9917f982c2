"""``/v1/measurements``: one row per uploaded recording, keyed by ``(job_id, upload_name)``."""

from __future__ import annotations

from sonalyze_storage.crud import Entity, crud_router
from sonalyze_storage.models import Measurement
from sonalyze_storage.schemas import MeasurementCreate, MeasurementFilters, MeasurementRead, MeasurementUpdate

ENTITY = Entity(
    name="measurement",
    path="measurements",
    model=Measurement,
    create=MeasurementCreate,
    update=MeasurementUpdate,
    read=MeasurementRead,
    filters=MeasurementFilters,
    natural_key=("job_id", "upload_name"),
)

router = crud_router(ENTITY)
