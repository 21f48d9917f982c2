"""The validation grid: simulated rooms against Eyring/Sabine and a high-order image-source reference.

Used by ``bench/simulation_grid.py`` (the whole grid, printed) and by ``tests/test_validation_grid.py`` (a
few cells, asserted). A cell is one shoebox room, one uniform absorption, one uniform scattering and one
method; it is compared on the mid bands (500 Hz-2 kHz) with

- T30 against Eyring's RT60 (meaningful where the field is diffuse, scattering >= 0.3);
- EDT, C50, C80 against image sources of high order (complete to well past EDT's -10 dB point), the
  early-response reference: specular, so it says nothing about the tail of a scattering room;
- the same room entered as a polygon (a rectangle), same settings: T30 and EDT in %, C50/C80 in dB.

Pure calls into the service's own planning and simulation (no HTTP); one process, seeded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

from sonalyze_simulation.planning import Limits, make_plan
from sonalyze_simulation.schemas import SimulationRequest
from sonalyze_simulation.simulate import simulate

MID_BANDS: Final = ("500", "1000", "2000")
REFERENCE_ORDER: Final = 60
"""Image-source order of the reference (a shoebox 2.5 m high: about 440 ms of complete response) ..."""

REFERENCE_ORDER_ABSORBING: Final = 30
"""... or 30 at absorption >= 0.2, where 30 reflections take 29 dB or more off every path: EDT, C50, C80
and T30 of order 30 equal order 60's within 0.01 dB and 1 % in these rooms (measured), at a fifth of the cost."""

REFERENCE_DEPTH_DB: Final = 30.0
"""... and at least the order after which every path has lost this much to absorption: order 60 at absorption
0.05 leaves paths only 13 dB down, so the reference missed the late energy the Schroeder integral adds to EDT's
first 10 dB (its EDT came out 14-25 % under a hybrid that had that energy); 30 dB takes order 135 there."""

MAX_REFERENCE_ORDER: Final = 150
SAMPLE_RATE_HZ: Final = 16000
"""Enough for the mid bands and quick; the grid compares models, not the 8 kHz band."""
NO_LIMITS: Final = Limits(max_pairs=100, cost_budget_s=1e9)


@dataclass(frozen=True, slots=True)
class Room:
    name: str
    dimensions_m: tuple[float, float, float]
    source_m: tuple[float, float, float]
    microphone_m: tuple[float, float, float]


ROOMS: Final = (
    Room("5x4x2.5", (5.0, 4.0, 2.5), (1.3, 1.1, 1.5), (3.6, 2.9, 1.2)),
    Room("8x6x3", (8.0, 6.0, 3.0), (2.0, 1.5, 1.5), (5.6, 4.0, 1.2)),
    Room("12x9x4", (12.0, 9.0, 4.0), (3.0, 2.5, 1.6), (8.5, 6.0, 1.3)),
)


POSITIONS: Final = {
    "5x4x2.5": (((1.3, 1.1, 1.5), (3.6, 2.9, 1.2)), ((0.8, 2.9, 1.7), (4.1, 1.2, 1.1))),
    "8x6x3": (((2.0, 1.5, 1.5), (5.6, 4.0, 1.2)), ((1.2, 4.6, 1.7), (6.5, 1.3, 1.1))),
    "12x9x4": (((3.0, 2.5, 1.6), (8.5, 6.0, 1.3)), ((1.5, 7.0, 1.8), (10.0, 2.0, 1.2))),
}
"""Two (source, microphone) placements per room of `ROOMS` (the first is the room's own): one position's
specular response is not another's, so the early response is checked at each."""


def placements(room: Room) -> list[Room]:
    """``room`` with each of its `POSITIONS`."""
    return [dataclasses.replace(room, source_m=s, microphone_m=m) for s, m in POSITIONS[room.name]]


def request(
    room: Room, method: str, absorption: float, scattering: float, *, polygon: bool = False, **extra: Any
) -> SimulationRequest:
    x, y, z = room.dimensions_m
    geometry: dict[str, Any] = (
        {"type": "polygon", "vertices": [[0, 0], [x, 0], [x, y], [0, y]], "height_m": z}
        if polygon
        else {"type": "shoebox", "dimensions_m": [x, y, z]}
    )
    body = {
        "room": geometry | {"default_material": {"absorption": absorption, "scattering": scattering}},
        "sources": [{"id": "s", "position_m": list(room.source_m)}],
        "microphones": [{"id": "m", "position_m": list(room.microphone_m)}],
        "method": method,
        "sample_rate_hz": SAMPLE_RATE_HZ,
    } | extra
    return SimulationRequest.model_validate(body)


def run(req: SimulationRequest) -> tuple[dict[str, Any], tuple[float, ...]]:
    """(the pair's parameters as the service reports them, Eyring RT60 per band)."""
    planned = make_plan(req, NO_LIMITS)
    output = simulate(planned.plan)
    return output.pairs[0].parameters, planned.eyring_rt60_s


def _relative(value: float | None, reference: float | None) -> float | None:
    """Per cent; 0 when both are null (they agree that the value cannot be had), None when only one is."""
    if value is None and reference is None:
        return 0.0
    if value is None or reference is None or reference == 0:
        return None
    return 100.0 * (value / reference - 1.0)


def _difference(value: float | None, reference: float | None) -> float | None:
    if value is None and reference is None:
        return 0.0
    if value is None or reference is None:
        return None
    return value - reference


def _worst(values: list[float | None]) -> float | None:
    """The value of largest magnitude (keeping its sign); None if any is None (a null is a failure)."""
    if not values or any(v is None for v in values):
        return None
    present = [v for v in values if v is not None]
    return max(present, key=abs)


@dataclass(frozen=True, slots=True)
class CellResult:
    """Worst signed error over `MID_BANDS`; None when a value was null."""

    t30_vs_eyring_pct: float | None
    edt_vs_ism_pct: float | None
    c50_vs_ism_db: float | None
    c80_vs_ism_db: float | None


def compare(parameters: dict[str, Any], reference: dict[str, Any], eyring_s: tuple[float, ...]) -> CellResult:
    bands = parameters["bands"]
    ref = reference["bands"]
    eyring = {key: eyring_s[i] for i, key in enumerate(("125", "250", "500", "1000", "2000", "4000", "8000"))}
    return CellResult(
        t30_vs_eyring_pct=_worst([_relative(bands[b]["t30_s"], eyring[b]) for b in MID_BANDS]),
        edt_vs_ism_pct=_worst([_relative(bands[b]["edt_s"], ref[b]["edt_s"]) for b in MID_BANDS]),
        c50_vs_ism_db=_worst([_difference(bands[b]["c50_db"], ref[b]["c50_db"]) for b in MID_BANDS]),
        c80_vs_ism_db=_worst([_difference(bands[b]["c80_db"], ref[b]["c80_db"]) for b in MID_BANDS]),
    )


@dataclass(frozen=True, slots=True)
class PolygonResult:
    """Worst signed difference polygon - shoebox over `MID_BANDS` (T30/EDT %, C dB); None when a value was null."""

    t30_pct: float | None
    edt_pct: float | None
    c50_db: float | None
    c80_db: float | None


def compare_polygon(polygon: dict[str, Any], shoebox: dict[str, Any]) -> PolygonResult:
    p, s = polygon["bands"], shoebox["bands"]
    return PolygonResult(
        t30_pct=_worst([_relative(p[b]["t30_s"], s[b]["t30_s"]) for b in MID_BANDS]),
        edt_pct=_worst([_relative(p[b]["edt_s"], s[b]["edt_s"]) for b in MID_BANDS]),
        c50_db=_worst([_difference(p[b]["c50_db"], s[b]["c50_db"]) for b in MID_BANDS]),
        c80_db=_worst([_difference(p[b]["c80_db"], s[b]["c80_db"]) for b in MID_BANDS]),
    )


def reference_order(absorption: float) -> int:
    """`REFERENCE_ORDER` (`REFERENCE_ORDER_ABSORBING` at absorption >= 0.2), or more where paths of that order
    are less than `REFERENCE_DEPTH_DB` down (``(1 - a) ** n``)."""
    base = REFERENCE_ORDER if absorption < 0.2 else REFERENCE_ORDER_ABSORBING
    depth = math.ceil(REFERENCE_DEPTH_DB / 10.0 * math.log(10.0) / -math.log1p(-absorption))
    return min(max(base, depth), MAX_REFERENCE_ORDER)


def reference(room: Room, absorption: float, **extra: Any) -> dict[str, Any]:
    """High-order image sources (scattering plays no part in them). The order may exceed what a request may
    ask for (`reference_order`), so it is set on the plan."""
    planned = make_plan(request(room, "ism", absorption, 0.0, max_order=REFERENCE_ORDER, **extra), NO_LIMITS)
    plan = dataclasses.replace(planned.plan, max_order=reference_order(absorption))
    return simulate(plan).pairs[0].parameters


def mid_mean(parameters: dict[str, Any], key: str) -> float | None:
    """Mean of a value over `MID_BANDS` (ISO 3382-1's single numbers average bands likewise); None if one is null."""
    values = [parameters["bands"][b][key] for b in MID_BANDS]
    if any(value is None for value in values):
        return None
    return sum(values) / len(values)


def mean_parameters(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Band values averaged over runs (seeds of the ray tracer): null where any run is null."""
    keys = ("edt_s", "t30_s", "c50_db", "c80_db")
    bands: dict[str, dict[str, float | None]] = {}
    for band in MID_BANDS:
        values = {k: [r["bands"][band][k] for r in runs] for k in keys}
        bands[band] = {k: None if None in vs else sum(vs) / len(vs) for k, vs in values.items()}
    return {"bands": bands}


def early_errors(parameters: dict[str, Any], reference: dict[str, Any]) -> dict[str, float | None]:
    """EDT and T30 in %, C50 and C80 in dB: mid-band means of ``parameters`` against ``reference``'s (0 when both
    are null, None when one is)."""
    out: dict[str, float | None] = {}
    for key in ("edt_s", "t30_s", "c50_db", "c80_db"):
        value, ref = mid_mean(parameters, key), mid_mean(reference, key)
        if value is None and ref is None:
            out[key] = 0.0  # both agree the value cannot be had (EDT of a strong direct sound)
        elif value is None or ref is None:
            out[key] = None
        elif key.endswith("_s"):
            out[key] = 100.0 * (value / ref - 1.0)
        else:
            out[key] = value - ref
    return out


def fmt(value: float | None, width: int = 7) -> str:
    return "null".rjust(width) if value is None or not math.isfinite(value) else f"{value:+{width}.1f}"
