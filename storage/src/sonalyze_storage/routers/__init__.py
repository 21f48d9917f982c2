"""One router per entity, each built by `crud_router` from its `Entity` description."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter

from sonalyze_storage.routers import (
    analysis_outputs,
    devices,
    lobbies,
    measurements,
    participants,
    simulation_jobs,
    simulation_results,
)

ROUTERS: Final[tuple[APIRouter, ...]] = (
    devices.router,
    lobbies.router,
    participants.router,
    measurements.router,
    analysis_outputs.router,
    simulation_jobs.router,
    simulation_results.router,
)
