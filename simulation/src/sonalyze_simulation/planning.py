"""The plan of one simulation: what a worker runs (`SimulationPlan`), and how a request becomes one (`make_plan`).

`make_plan` runs in the service process: geometry checks, materials, defaults, ray-tracing settings, the
cost guard. Everything a client can get wrong about the room as a whole is found here and reported as
`BadRequest` with the field at fault (``field``) and, for unknown materials, the closest names
(``close_matches``). The plan itself is frozen dataclasses of plain numbers, pickled to a worker and turned
into a pyroomacoustics room there (`acoustics.pyroom`), so the hand-over is cheap and exact. Pure: no I/O,
no pyroomacoustics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from sonalyze_protocol.errors import BadRequest
from sonalyze_simulation import geometry as geo
from sonalyze_simulation import hybrid
from sonalyze_simulation.acoustics.metrics import (
    AIR_ATTENUATION_PER_M,
    SPEED_OF_SOUND_M_S,
    ReverberationEstimates,
    mean_free_path_m,
    reverberation_estimates,
)
from sonalyze_simulation.cost import CostEstimate, CostInputs, advice, estimate_cost
from sonalyze_simulation.materials import close_matches, find_material
from sonalyze_simulation.schemas import (
    DEFAULT_SCATTERING,
    MaterialSpec,
    Placement,
    PolygonRoom,
    ShoeboxRoom,
    SimulationRequest,
    band_coefficients,
)

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
    def on_lattice(self) -> bool:
        """Whether the image sources run on the shoebox lattice: a shoebox, or a floor plan that is a rectangle
        along the axes (the same images as the general search finds, at polynomial rather than exponential
        cost; `sonalyze_simulation.acoustics.pyroom`)."""
        return self.kind == "shoebox" or geo.axis_aligned_rectangle(self.vertices) is not None

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


# ray tracing (methods ray_tracing and hybrid): the hybrid traces rays only for reflections above
# max_order, below it the image sources give the exact early arrivals; rays stop when their energy falls
# 70 dB or after time_threshold_s
RECEIVER_RADIUS_M: Final = 0.5
"""Radius of the sphere around each microphone that counts ray hits (pyroomacoustics' default)."""
MIN_RAYS: Final = 5000
MAX_AUTO_RAYS: Final = 100_000
TARGET_HITS_PER_BIN: Final = 20
RAY_ENERGY_THRESHOLD: Final = 1e-7
HIST_BIN_SIZE_S: Final = 0.004
MAX_TIME_THRESHOLD_S: Final = 10.0


def default_n_rays(volume_m3: float) -> int:
    """Rays for ~20 receiver hits per 4 ms histogram bin, clamped to [5 000, 100 000].

    ``n = 20 V / (pi r^2 c dt)``: Vorländer (2008), *Auralization*, eq. 11.12, as pyroomacoustics applies it.
    Small rooms get the floor (a smoother tail for little cost), large halls the ceiling (cost guard).
    """
    if volume_m3 <= 0:
        raise ValueError(f"volume_m3 must be > 0, got {volume_m3}")
    hits_per_ray = math.pi * RECEIVER_RADIUS_M**2 * SPEED_OF_SOUND_M_S * HIST_BIN_SIZE_S / volume_m3
    return int(min(MAX_AUTO_RAYS, max(MIN_RAYS, TARGET_HITS_PER_BIN / hits_per_ray)))


def ray_tracing_plan(volume_m3: float, longest_rt60_s: float, n_rays: int | None) -> RayTracingPlan:
    """Settings for one run; the time limit is twice the longest expected RT60 (at least 0.5 s, at most 10 s)."""
    return RayTracingPlan(
        n_rays=n_rays or default_n_rays(volume_m3),
        receiver_radius_m=RECEIVER_RADIUS_M,
        energy_threshold=RAY_ENERGY_THRESHOLD,
        time_threshold_s=min(MAX_TIME_THRESHOLD_S, max(0.5, 2.0 * longest_rt60_s)),
        hist_bin_size_s=HIST_BIN_SIZE_S,
    )


MIN_DIMENSION_M: Final = 1.0
MAX_DIMENSION_M: Final = 200.0
MIN_FLOOR_AREA_M2: Final = 1.0
MIN_WALL_LENGTH_M: Final = 0.1
MIN_SURFACE_DISTANCE_M: Final = 0.05
"""Sources and microphones keep at least this far from every surface."""
MIN_PAIR_DISTANCE_M: Final = 0.1

ISM_AUTO_MAX_ORDER_SHOEBOX: Final = 50
ISM_AUTO_MAX_ORDER_POLYGON: Final = 10


@dataclass(frozen=True, slots=True)
class Limits:
    max_pairs: int
    cost_budget_s: float


@dataclass(frozen=True, slots=True)
class PlannedSimulation:
    plan: SimulationPlan
    cost: CostEstimate
    estimates: ReverberationEstimates
    air_attenuation_per_m: tuple[float, ...]
    mean_free_path_m: float
    notes: tuple[str, ...]

    @property
    def eyring_rt60_s(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self.estimates.eyring_rt60_s)


def make_plan(request: SimulationRequest, limits: Limits) -> PlannedSimulation:
    """Check the request as a whole, resolve defaults, and refuse it when it is over budget."""
    n_pairs = len(request.sources) * len(request.microphones)
    if n_pairs > limits.max_pairs:
        raise BadRequest(
            f"{len(request.sources)} sources x {len(request.microphones)} microphones = {n_pairs} pairs; "
            f"at most {limits.max_pairs} pairs per request: split the request",
            field="microphones",
        )
    if request.method == "ray_tracing" and request.max_order is not None:
        raise BadRequest("max_order applies to methods ism and hybrid, not ray_tracing", field="max_order")
    if request.method == "ism" and request.n_rays is not None:
        raise BadRequest("n_rays applies to methods ray_tracing and hybrid, not ism", field="n_rays")

    geometry = _geometry(request.room)
    sources = _placements(request.sources, geometry, "sources")
    microphones = _placements(request.microphones, geometry, "microphones")
    _check_distances(sources, microphones)

    areas = np.array([s.area_m2 for s in geometry.surfaces])
    absorption = np.array([s.absorption for s in geometry.surfaces])
    air = np.array(AIR_ATTENUATION_PER_M) if request.air_absorption else None
    estimates = reverberation_estimates(geometry.volume_m3, areas, absorption, air)
    mfp_m = mean_free_path_m(geometry.volume_m3, geometry.surface_m2)
    air_per_hop = (air if air is not None else np.zeros(len(AIR_ATTENUATION_PER_M))) * mfp_m
    decay_per_hop = float(np.min(-np.log1p(-np.minimum(estimates.mean_absorption, 0.999999)) + air_per_hop))
    sabine_max_s = float(np.max(np.where(np.isfinite(estimates.sabine_rt60_s), estimates.sabine_rt60_s, 60.0)))
    eyring_max_s = float(np.max(np.where(np.isfinite(estimates.eyring_rt60_s), estimates.eyring_rt60_s, 60.0)))

    ray_tracing = None
    if request.method in ("ray_tracing", "hybrid"):
        ray_tracing = ray_tracing_plan(geometry.volume_m3, sabine_max_s, request.n_rays)

    def cost_for(max_order: int | None) -> tuple[CostInputs, CostEstimate]:
        inputs = CostInputs(
            n_sources=len(sources),
            n_microphones=len(microphones),
            method=request.method,
            max_order=max_order,
            is_shoebox=geometry.on_lattice,
            n_walls_total=len(geometry.surfaces),
            sample_rate_hz=request.sample_rate_hz,
            expected_rt60_s=sabine_max_s,
            min_band_decay_per_hop=decay_per_hop,
            n_rays=ray_tracing.n_rays if ray_tracing else None,
            ray_time_threshold_s=ray_tracing.time_threshold_s if ray_tracing else 0.0,
            longest_extent_m=_longest_extent_m(geometry),
            mean_free_path_m=mfp_m,
            volume_m3=geometry.volume_m3,
        )
        return inputs, estimate_cost(inputs)

    notes: list[str] = []
    max_order = request.max_order
    mid_eyring = estimates.eyring_rt60_s[2:5]
    eyring_mid_s = float(np.mean(np.where(np.isfinite(mid_eyring), mid_eyring, 60.0)))
    early_s = hybrid.early_s(eyring_mid_s, _mid_scattering(geometry), mfp_m, SPEED_OF_SOUND_M_S)
    if request.method == "hybrid" and max_order is None:

        def order_for(early: float, on_lattice: bool) -> int:
            return hybrid.hybrid_order(
                _shortest_extent_m(geometry),
                max(math.dist(s.position_m, m.position_m) for s in sources for m in microphones),
                len(geometry.surfaces),
                SPEED_OF_SOUND_M_S,
                early,
                on_lattice=on_lattice,
            )

        # the first 10 dB of the decay at the order every room gets (a polygon's search budget); beyond that,
        # while reflections stay specular (`hybrid.early_s`), the lattice's higher orders within half the
        # budget, as method ism. At scattering >= 0.3 nothing changes: the image sources' specular decay
        # must not reach T30 there, and the transition was measured at this order
        base_early_s = hybrid.early_s(eyring_mid_s)
        max_order = least_order = order_for(base_early_s, on_lattice=False)
        if early_s > base_early_s and geometry.on_lattice:
            max_order = max(least_order, order_for(early_s, on_lattice=True))
        while max_order > least_order and cost_for(max_order)[1].total_s > limits.cost_budget_s / 2:
            max_order = max(least_order, max_order - max(1, max_order // 10))
    elif request.method == "ism" and max_order is None:
        max_order = _auto_ism_order(eyring_max_s, mfp_m, geometry.on_lattice)
        while max_order > 1 and cost_for(max_order)[1].total_s > limits.cost_budget_s / 2:
            max_order -= 1
    if request.method == "ism":
        covered_s = (max_order or 0) * mfp_m / SPEED_OF_SOUND_M_S
        if covered_s < 0.6 * eyring_max_s:
            notes.append(
                f"image sources up to order {max_order} cover about the first {covered_s:.2f} s, while the "
                f"Eyring RT60 reaches {eyring_max_s:.2f} s: the response is cut before its decay is measurable, "
                "so rt60/t30/t20 come out short or null; use method=hybrid for the reverberant tail"
            )

    inputs, cost = cost_for(max_order)
    if cost.total_s > limits.cost_budget_s:
        raise BadRequest(
            f"this simulation would take about {cost.total_s:.0f} s of computation, over the budget of "
            f"{limits.cost_budget_s:.0f} s; {advice(cost, inputs)}",
            field="method",
            estimated_cost_s=round(cost.total_s, 1),
            cost_budget_s=limits.cost_budget_s,
            cost_breakdown=cost.as_dict(),
        )

    plan = SimulationPlan(
        geometry=geometry,
        sources=sources,
        microphones=microphones,
        method=request.method,
        max_order=max_order,
        sample_rate_hz=request.sample_rate_hz,
        air_absorption=request.air_absorption,
        ray_tracing=ray_tracing,
        seed=request.seed,
        hybrid_early_s=early_s,
    )
    return PlannedSimulation(
        plan=plan,
        cost=cost,
        estimates=estimates,
        air_attenuation_per_m=tuple(float(x) for x in air) if air is not None else (0.0,) * len(AIR_ATTENUATION_PER_M),
        mean_free_path_m=mfp_m,
        notes=tuple(notes),
    )


def _longest_extent_m(geometry: GeometryPlan) -> float:
    """The room's largest extent: the floor plan's widest span or the height."""
    points = np.array(geometry.vertices, dtype=float)
    span_m = float(np.max(np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)))
    return max(span_m, geometry.height_m)


def _mid_scattering(geometry: GeometryPlan) -> float:
    """The surfaces' scattering coefficient in the mid bands (500 Hz-2 kHz), averaged over area."""
    areas = np.array([s.area_m2 for s in geometry.surfaces])
    scattering = np.array([np.mean(s.scattering[2:5]) for s in geometry.surfaces])
    return float(np.clip(np.sum(areas * scattering) / np.sum(areas), 0.0, 1.0))


def _shortest_extent_m(geometry: GeometryPlan) -> float:
    """The room's smallest size: its height or the floor plan's narrower bounding-box side."""
    xs = [x for x, _ in geometry.vertices]
    ys = [y for _, y in geometry.vertices]
    return min(geometry.height_m, max(xs) - min(xs), max(ys) - min(ys))


def _auto_ism_order(eyring_max_s: float, mfp_m: float, is_shoebox: bool) -> int:
    """Reflections needed for image sources to reach the end of the Eyring decay, capped per geometry."""
    needed = math.ceil(SPEED_OF_SOUND_M_S * eyring_max_s / mfp_m)
    cap = ISM_AUTO_MAX_ORDER_SHOEBOX if is_shoebox else ISM_AUTO_MAX_ORDER_POLYGON
    return max(1, min(needed, cap))


# ---- geometry --------------------------------------------------------------------------------------------


def _geometry(room: ShoeboxRoom | PolygonRoom) -> GeometryPlan:
    if isinstance(room, ShoeboxRoom):
        for axis, size in zip("xyz", room.dimensions_m, strict=True):
            if not MIN_DIMENSION_M <= size <= MAX_DIMENSION_M:
                raise BadRequest(
                    f"room.dimensions_m: {axis} = {size} m; each dimension must lie in "
                    f"[{MIN_DIMENSION_M}, {MAX_DIMENSION_M}] m",
                    field="room.dimensions_m",
                )
        width, depth, height = room.dimensions_m
        vertices = geo.rectangle(width, depth)
    else:
        vertices = [(float(x), float(y)) for x, y in room.vertices]
        height = room.height_m
        _check_polygon(vertices)
        if not MIN_DIMENSION_M <= height <= MAX_DIMENSION_M:
            raise BadRequest(
                f"room.height_m is {height} m; it must lie in [{MIN_DIMENSION_M}, {MAX_DIMENSION_M}] m",
                field="room.height_m",
            )

    n_walls = len(vertices)
    for index in room.surfaces.walls:
        if not 0 <= index < n_walls:
            raise BadRequest(
                f"room.surfaces.walls has wall {index}, but the room has walls 0 to {n_walls - 1} "
                "(wall i joins vertex i to vertex i+1)",
                field=f"room.surfaces.walls.{index}",
            )
    floor_area_m2 = abs(geo.signed_area_m2(vertices))
    default = _material(room.default_material, "room.default_material")
    surfaces: list[SurfacePlan] = []
    for i in range(n_walls):
        length_m = math.dist(vertices[i], vertices[(i + 1) % n_walls])
        spec = room.surfaces.walls.get(i)
        mat = _material(spec, f"room.surfaces.walls.{i}") if spec else default
        surfaces.append(SurfacePlan(f"wall_{i}", length_m * height, *mat))
    for name in ("floor", "ceiling"):
        spec = getattr(room.surfaces, name)
        mat = _material(spec, f"room.surfaces.{name}") if spec else default
        surfaces.append(SurfacePlan(name, floor_area_m2, *mat))
    return GeometryPlan(
        kind=room.type,
        vertices=tuple(vertices),
        height_m=float(height),
        volume_m3=floor_area_m2 * height,
        surface_m2=sum(s.area_m2 for s in surfaces),
        floor_area_m2=floor_area_m2,
        surfaces=tuple(surfaces),
    )


def _check_polygon(vertices: list[geo.Point2]) -> None:
    n = len(vertices)
    for i in range(n):
        x, y = vertices[i]
        if max(abs(x), abs(y)) > MAX_DIMENSION_M:
            raise BadRequest(
                f"room.vertices[{i}] = [{x}, {y}] lies beyond {MAX_DIMENSION_M} m of the origin",
                field=f"room.vertices.{i}",
            )
        length_m = math.dist(vertices[i], vertices[(i + 1) % n])
        if length_m < MIN_WALL_LENGTH_M:
            raise BadRequest(
                f"room.vertices[{i}] and [{(i + 1) % n}] are {length_m:.3f} m apart; walls must be at least "
                f"{MIN_WALL_LENGTH_M} m long (remove repeated vertices)",
                field=f"room.vertices.{i}",
            )
    crossing = geo.self_intersection(vertices)
    if crossing is not None:
        a, b = crossing
        raise BadRequest(
            f"room.vertices do not form a simple polygon: wall {a} (vertex {a} to {(a + 1) % n}) and wall {b} "
            f"(vertex {b} to {(b + 1) % n}) cross or overlap; list the corners in order around the room",
            field="room.vertices",
        )
    area_m2 = abs(geo.signed_area_m2(vertices))
    if area_m2 < MIN_FLOOR_AREA_M2:
        raise BadRequest(
            f"room.vertices enclose {area_m2:.3f} m2; the floor must be at least {MIN_FLOOR_AREA_M2} m2",
            field="room.vertices",
        )


def _material(spec: MaterialSpec, where: str) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """(label, absorption per band, scattering per band) for one surface."""
    if spec.name is not None:
        record = find_material(spec.name)
        if record is None:
            matches = close_matches(spec.name)
            hint = f"; did you mean {', '.join(matches)}?" if matches else ""
            raise BadRequest(
                f"{where}.name: unknown material '{spec.name}'{hint} GET /materials lists them all",
                field=f"{where}.name",
                close_matches=matches,
            )
        absorption = record.absorption_for_simulation()
        scattering = record.scattering
        if spec.scattering is not None:
            scattering = band_coefficients(spec.scattering, "scattering")
        return record.name, absorption, scattering
    assert spec.absorption is not None
    absorption = band_coefficients(spec.absorption, "absorption")
    scattering = band_coefficients(spec.scattering if spec.scattering is not None else DEFAULT_SCATTERING, "scattering")
    label = f"absorption {spec.absorption}" if isinstance(spec.absorption, int | float) else "custom"
    return label, absorption, scattering


def _placements(placements: list[Placement], geometry: GeometryPlan, field: str) -> tuple[PlacementPlan, ...]:
    out = []
    for i, p in enumerate(placements):
        x, y, z = p.position_m
        where = f"{field}[{i}] (id '{p.id}') at [{x}, {y}, {z}]"
        inside = geo.contains(geometry.vertices, (x, y)) and 0.0 < z < geometry.height_m
        if not inside:
            raise BadRequest(f"{where} is outside the room", field=f"{field}.{i}.position_m")
        clearance_m = min(geo.distance_to_boundary_m(geometry.vertices, (x, y)), z, geometry.height_m - z)
        if clearance_m < MIN_SURFACE_DISTANCE_M:
            raise BadRequest(
                f"{where} is {clearance_m:.3f} m from a surface; keep at least {MIN_SURFACE_DISTANCE_M} m",
                field=f"{field}.{i}.position_m",
            )
        out.append(PlacementPlan(p.id, (float(x), float(y), float(z))))
    return tuple(out)


def _check_distances(sources: tuple[PlacementPlan, ...], microphones: tuple[PlacementPlan, ...]) -> None:
    for s in sources:
        for m in microphones:
            distance_m = math.dist(s.position_m, m.position_m)
            if distance_m < MIN_PAIR_DISTANCE_M:
                raise BadRequest(
                    f"source '{s.id}' and microphone '{m.id}' are {distance_m:.3f} m apart; "
                    f"keep at least {MIN_PAIR_DISTANCE_M} m",
                    field="microphones",
                )
