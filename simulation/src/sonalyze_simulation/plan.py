"""`SimulationPlan`: everything a worker process needs to run one simulation, resolved and checked.

Built from a request by `planning.make_plan` in the service process, pickled to a worker, turned into a
pyroomacoustics room there. Frozen dataclasses of plain numbers, so the hand-over is cheap and exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class SurfacePlan:
    """One surface: its name (``wall_0`` ... ``floor``, ``ceiling``), area and coefficients per band."""

    name: str
    area_m2: float
    material: str
    absorption: tuple[float, ...]
    scattering: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    id: str
    position_m: Vec3


@dataclass(frozen=True, slots=True)
class GeometryPlan:
    """A shoebox (``dimensions_m``) or an extruded floor plan (``vertices`` + ``height_m``).

    Walls follow the floor plan: wall ``i`` joins vertex ``i`` to ``i + 1``; a shoebox's floor plan is
    ``(0, 0), (x, 0), (x, y), (0, y)``. ``surfaces`` lists the walls in order, then floor, then ceiling.
    """

    kind: Literal["shoebox", "polygon"]
    vertices: tuple[tuple[float, float], ...]
    height_m: float
    volume_m3: float
    surface_m2: float
    floor_area_m2: float
    surfaces: tuple[SurfacePlan, ...]

    @property
    def n_walls(self) -> int:
        return len(self.vertices)

    @property
    def dimensions_m(self) -> Vec3:
        """Shoebox only: (width, depth, height)."""
        return (self.vertices[2][0], self.vertices[2][1], self.height_m)


@dataclass(frozen=True, slots=True)
class RayTracingPlan:
    n_rays: int
    receiver_radius_m: float
    energy_threshold: float
    time_threshold_s: float
    hist_bin_size_s: float


@dataclass(frozen=True, slots=True)
class SimulationPlan:
    geometry: GeometryPlan
    sources: tuple[PlacementPlan, ...]
    microphones: tuple[PlacementPlan, ...]
    method: Literal["ism", "ray_tracing", "hybrid"]
    max_order: int | None
    sample_rate_hz: int
    air_absorption: bool
    ray_tracing: RayTracingPlan | None
    seed: int
    hybrid_early_s: float = 0.05
    """Hybrid only: how long after the direct sound the image sources carry the response (`hybrid`)."""

    @property
    def n_pairs(self) -> int:
        return len(self.sources) * len(self.microphones)
