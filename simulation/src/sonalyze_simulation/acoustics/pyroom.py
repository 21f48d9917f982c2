"""Builds and runs a pyroomacoustics room from a `SimulationPlan` (runs inside a worker process).

Four things pyroomacoustics leaves to its caller, handled here:
- wall order: our wall ``i`` joins floor-plan vertex ``i`` to ``i + 1`` for shoeboxes and polygons alike;
  pyroomacoustics names shoebox walls west/east/south/north and reverses clockwise floor plans;
- materials: our 7 bands (125 Hz - 8 kHz) are padded flat above 8 kHz, so its log-frequency
  extrapolation to the 16 kHz band at high sample rates cannot invent a slope;
- duplicate image sources: the general (polygon) image-source search finds a reflection path that passes
  exactly through an edge twice, once per wall; symmetric placements hit edges often. The shoebox
  lattice counts each image once; we drop the duplicates so both give the same response;
- one ray tracer for every room: a rectangle entered as a polygon must be the same Monte-Carlo run as its
  shoebox (same seed), or it differs by the ray tracer's counting noise (EDT +-10 %, C50 +-1.5 dB per band
  for method ray_tracing). Three things made it another run: (1) libroom draws each scattered direction in the
  hit wall's own frame, derived (SVD) from the wall's corners from the first one on, and ``extrude`` starts the
  floor and ceiling at other corners than ``ShoeBox`` (`canonical_floor_and_ceiling`); (2) ``ShoeBox``'s
  analytic wall intersection differs from the general one in the last float bit, enough to end a ray a
  reflection earlier or later and shift every random draw after it: rays always run in the general engine
  (about 1.45x the analytic one's time), image sources of a shoebox still on its lattice; (3) building a
  polygon room draws from numpy's generator (pyroomacoustics' inside test picks a random outside point) and a
  shoebox does not, which shifted the random sequence the rays' response is synthesised from: the engine is
  seeded once the room is built (`build_room`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyroomacoustics as pra
from numpy.typing import NDArray

from sonalyze_simulation.acoustics.metrics import AIR_ATTENUATION_PER_M, SPEED_OF_SOUND_M_S
from sonalyze_simulation.bands import BAND_CENTERS_HZ
from sonalyze_simulation.geometry import axis_aligned_rectangle, signed_area_m2
from sonalyze_simulation.planning import SimulationPlan, SurfacePlan

_PADDED_CENTERS_HZ: tuple[int, ...] = (*BAND_CENTERS_HZ, 16000, 32000)
_IMAGE_DEDUPE_DECIMALS: int = 6


def _padded(values: tuple[float, ...]) -> list[float]:
    return [*values, values[-1], values[-1]]


def material(surface: SurfacePlan) -> pra.Material:
    """A pyroomacoustics material with our per-band energy absorption and scattering."""
    return pra.Material(
        energy_absorption={"coeffs": _padded(surface.absorption), "center_freqs": list(_PADDED_CENTERS_HZ)},
        scattering={"coeffs": _padded(surface.scattering), "center_freqs": list(_PADDED_CENTERS_HZ)},
    )


def fractional_delay_offset_samples() -> int:
    """Samples pyroomacoustics puts before every arrival (half its fractional-delay filter)."""
    return int(pra.constants.get("frac_delay_length")) // 2


def build_room(plan: SimulationPlan, engine: Literal["ism", "ray_tracing"] | None = None) -> pra.Room:
    """The room with its materials, sources and microphones, configured for the plan's method.

    ``engine`` runs one part of the hybrid alone (image sources to ``max_order``, or rays alone); the hybrid
    is never left to pyroomacoustics' own join (see `sonalyze_simulation.hybrid`). Image sources of a shoebox,
    or of a floor plan that is a rectangle along the axes, run on the lattice (``ShoeBox``, the room shifted to
    start at the origin): the same images as the general search, which would cap its order far lower for cost
    (planning). Rays always run in the general engine, as a polygon's (module docstring).
    The engine's generators are seeded with the plan's seed once the room is built.
    """
    geometry = plan.geometry
    if engine is None and plan.method == "hybrid":
        raise ValueError("the hybrid method is run as its two parts: pass engine='ism' or 'ray_tracing'")
    engine = engine or ("ray_tracing" if plan.method == "ray_tracing" else "ism")
    max_order = -1 if engine == "ray_tracing" else int(plan.max_order or 0)
    surfaces = {s.name: s for s in geometry.surfaces}
    walls = [surfaces[f"wall_{i}"] for i in range(geometry.n_walls)]
    common = {"fs": plan.sample_rate_hz, "max_order": max_order, "air_absorption": False}

    offset_m = (0.0, 0.0, 0.0)
    if engine == "ism" and geometry.on_lattice:
        extent = axis_aligned_rectangle(geometry.vertices)
        assert extent is not None  # a shoebox's floor plan is one too
        (x0, y0), (x1, y1) = extent
        offset_m = (x0, y0, 0.0)
        materials = {_side(geometry.vertices, i, x0, y0): material(wall) for i, wall in enumerate(walls)}
        materials["floor"] = material(surfaces["floor"])
        materials["ceiling"] = material(surfaces["ceiling"])
        room = pra.ShoeBox([x1 - x0, y1 - y0, geometry.height_m], materials=materials, **common)
    else:
        vertices = list(geometry.vertices)
        if signed_area_m2(vertices) < 0:
            # pyroomacoustics wants counter-clockwise corners; reversing the ring maps our wall i
            # (vertex i -> i+1) to its wall n-2-i (mod n)
            n = len(vertices)
            vertices = vertices[::-1]
            walls = [walls[(n - 2 - j) % n] for j in range(n)]
        corners = np.asarray(vertices, dtype=float).T
        room = pra.Room.from_corners(corners, materials=[material(w) for w in walls], **common)
        room.extrude(
            geometry.height_m,
            materials={"floor": material(surfaces["floor"]), "ceiling": material(surfaces["ceiling"])},
        )
        canonical_floor_and_ceiling(room)
    room.set_sound_speed(SPEED_OF_SOUND_M_S)
    if plan.air_absorption:
        room.set_air_absorption(coefficients=_padded(AIR_ATTENUATION_PER_M), center_freqs=list(_PADDED_CENTERS_HZ))
    if engine == "ray_tracing" and plan.ray_tracing is not None:
        rt = plan.ray_tracing
        room.set_ray_tracing(
            n_rays=rt.n_rays,
            receiver_radius=rt.receiver_radius_m,
            energy_thres=rt.energy_threshold,
            time_thres=rt.time_threshold_s,
            hist_bin_size=rt.hist_bin_size_s,
        )
    shift = np.asarray(offset_m)  # the lattice starts at the origin
    for source in plan.sources:
        room.add_source(list(np.asarray(source.position_m) - shift))
    room.add_microphone_array((np.asarray([m.position_m for m in plan.microphones], dtype=float) - shift).T)
    seed_engine(plan.seed)
    return room


def _side(vertices: tuple[tuple[float, float], ...], wall: int, x0: float, y0: float) -> str:
    """``ShoeBox``'s name of the rectangle's wall ``wall`` (vertex ``wall`` to the next)."""
    (ax, ay), (_, by) = vertices[wall], vertices[(wall + 1) % len(vertices)]
    if ay == by:
        return "south" if ay == y0 else "north"
    return "west" if ax == x0 else "east"


def canonical_floor_and_ceiling(room: pra.Room) -> None:
    """Start the extruded floor's and ceiling's corners where ``ShoeBox`` starts them (same winding).

    The corner of largest x, then smallest y: ``(x, 0)`` of a shoebox, for a rectangle entered from any corner
    in either direction or shifted. Only the first corner changes, so each surface and its normal stay as they
    are; what changes is the frame libroom derives from the corners, in which the ray tracer draws the
    scattered directions.
    """
    for index, wall in enumerate(room.walls):
        if wall.name not in ("floor", "ceiling"):
            continue
        corners = np.asarray(wall.corners, dtype=np.float64)
        first = max(range(corners.shape[1]), key=lambda k: (corners[0, k], -corners[1, k]))
        room.walls[index] = pra.wall_factory(
            np.roll(corners, -first, axis=1), np.asarray(wall.absorption), np.asarray(wall.scatter), name=wall.name
        )
    room._init_room_engine()  # what extrude() itself calls after building the walls


def drop_duplicate_images(room: pra.Room) -> int:
    """Hide image sources a microphone sees twice (same position); returns how many were hidden.

    Two wall sequences can give the same image (X then Y, Y then X at a right-angled corner); for a given
    microphone normally only one of them is a valid path. Both are valid only when the path runs exactly
    through the edge, and then the arrival is counted once.
    """
    hidden = 0
    for s, source in enumerate(room.sources):
        images = getattr(source, "images", None)
        if images is None or images.size == 0:
            continue
        rounded = np.round(images.T.astype(np.float64), _IMAGE_DEDUPE_DECIMALS)
        visibility = room.visibility[s]
        for m in range(visibility.shape[0]):
            visible = np.flatnonzero(visibility[m])
            if visible.size < 2:
                continue
            _, first = np.unique(rounded[visible], axis=0, return_index=True)
            duplicate = np.setdiff1d(visible, visible[first])
            visibility[m, duplicate] = 0
            hidden += int(duplicate.size)
    return hidden


def compute_impulse_responses(room: pra.Room, *, polygon: bool) -> list[list[NDArray[np.float64]]]:
    """``rirs[m][s]``: the impulse response from source ``s`` to microphone ``m`` (1-D, at the room's rate)."""
    if room.simulator_state["ism_needed"]:
        room.image_source_model()
        if polygon and not isinstance(room, pra.ShoeBox):
            drop_duplicate_images(room)
    if room.simulator_state["rt_needed"]:
        room.ray_tracing()
    room.compute_rir()
    return [[np.asarray(ir, dtype=np.float64) for ir in per_mic] for per_mic in room.rir]


def image_distances_m(room: pra.Room, source: int, microphone: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Distances from one microphone to all image sources of one source (visible or not), and their orders."""
    src = room.sources[source]
    images = np.asarray(src.images, dtype=np.float64)
    mic = np.asarray(room.mic_array.R[:, microphone], dtype=np.float64)
    return np.linalg.norm(images - mic[:, None], axis=0), np.asarray(src.orders, dtype=np.int64)


def seed_engine(seed: int) -> None:
    """Seed pyroomacoustics' generators (numpy and its C++ ray tracer).

    They are process-wide; a worker runs one simulation at a time, so seeding each room once it is built
    (`build_room`: building a polygon draws from numpy, a shoebox does not) makes every run reproducible, the
    same for a rectangle in either form, without affecting another.
    """
    pra.random.seed(numpy=seed, libroom=seed)
