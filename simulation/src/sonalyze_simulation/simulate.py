"""Runs one `SimulationPlan` (in a worker process): image sources, rays if asked, metrics per pair.

Image sources (ISM) give the exact specular arrivals up to ``max_order``; alone they stop where that
order stops, so their decay is cut short in live rooms (see `planning` for the note the response
carries). ``hybrid`` runs image sources and rays separately and joins them without an energy step
(`hybrid`); ``ray_tracing`` uses rays only.
Metrics come from `sonalyze_acoustics.parameters.room_parameters`, the code that analyses measurements.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from sonalyze_acoustics.parameters import room_parameters
from sonalyze_acoustics.plots import plot_data
from sonalyze_simulation import hybrid
from sonalyze_simulation.acoustics import pyroom
from sonalyze_simulation.acoustics.metrics import SPEED_OF_SOUND_M_S
from sonalyze_simulation.planning import SimulationPlan

MIN_IR_S: Final = 0.1
"""Responses shorter than this (low image orders in small rooms) are padded with zeros: the shared
metrics need at least 50 ms, and the silence after the last arrival is what the room would give."""

TAIL_FLOOR_DB: Final = 80.0
"""Responses end where the energy still to come is this far below the total. Rays stop 70 dB down, so
the tail beyond is incomplete and then round-off; left in, that flat floor ~110 dB down is what a decay
fit of a noise-free response lands on ("the band's energy does not decay"). 80 dB leaves T30 (which
needs 35 dB plus margin) plenty of measured decay; chosen by counting the metrics left null over
shoebox/polygon rooms, alpha 0.05-0.5, 16 and 48 kHz: 139 null without the cut, 52 at 100 dB, 12 at 80 dB."""


def trim_tail(ir: NDArray[np.float64], floor_db: float = TAIL_FLOOR_DB) -> NDArray[np.float64]:
    """``ir`` cut where its backward-integrated energy falls ``floor_db`` below the total."""
    remaining = np.cumsum((ir * ir)[::-1])[::-1]
    if remaining[0] <= 0:
        return ir
    end = int(np.searchsorted(-remaining, -remaining[0] * 10.0 ** (-floor_db / 10.0)))
    return ir[: max(end, 1)]


@dataclass(frozen=True, slots=True)
class PairOutput:
    source_id: str
    microphone_id: str
    distance_m: float
    direct_index: int
    ir: NDArray[np.float32]
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SimulationOutput:
    pairs: tuple[PairOutput, ...]
    simulate_s: float
    metrics_s: float


def direct_index(distance_m: float, sample_rate_hz: int) -> int:
    """Sample of the direct sound in a pyroomacoustics response: travel time plus the filter's half length."""
    return round(distance_m / SPEED_OF_SOUND_M_S * sample_rate_hz) + pyroom.fractional_delay_offset_samples()


def _hybrid_responses(plan: SimulationPlan, polygon: bool) -> list[list[NDArray[np.float64]]]:
    """``rirs[m][s]`` of the hybrid: image sources, then a tail shaped by the ray tracer's fitted decay.

    The rays run alone (their energy histograms, no response of their own); each pair's tail is noise with
    the per-band exponential envelope fitted to its histogram (`hybrid.fit_tail`), joined to the image sources
    without an energy step (`hybrid.join`). A pair whose histogram cannot be fitted keeps the rays' own
    response as its tail.
    """
    assert plan.ray_tracing is not None
    ism_room = pyroom.build_room(plan, engine="ism")
    ism_rirs = pyroom.compute_impulse_responses(ism_room, polygon=polygon)
    rt_room = pyroom.build_room(plan, engine="ray_tracing")
    rt_room.ray_tracing()
    centres_hz = tuple(float(c) for c in rt_room.octave_bands.centers)
    air_db_per_s = None
    if plan.air_absorption and rt_room.air_absorption is not None:
        # energy falls as exp(-m c t): 10 log10(e) m c dB per second
        air_db_per_s = tuple(10.0 * math.log10(math.e) * float(m) * SPEED_OF_SOUND_M_S for m in rt_room.air_absorption)
    offset = pyroom.fractional_delay_offset_samples()
    fs = float(plan.sample_rate_hz)
    rays_ir: list[list[NDArray[np.float64]]] | None = None
    out: list[list[NDArray[np.float64]]] = []
    for m, mic in enumerate(plan.microphones):
        row = []
        for s, source in enumerate(plan.sources):
            distance_m = math.dist(source.position_m, mic.position_m)
            distances_m, orders = pyroom.image_distances_m(ism_room, s, m)
            t_x = hybrid.transition_s(
                distances_m, orders, int(plan.max_order or 0), distance_m, SPEED_OF_SOUND_M_S, plan.hybrid_early_s
            )
            model = hybrid.fit_tail(
                rt_room.rt_histograms[m][s][0], plan.ray_tracing.hist_bin_size_s, centres_hz, t_x, air_db_per_s
            )
            if model is not None:
                end_s = min(
                    float(model.times_s[-1]) + max(hybrid.TAIL_DB / -slope for slope in model.slope_db_per_s),
                    hybrid.MAX_TAIL_S,
                )
                n = max(int(end_s * fs) + offset, ism_rirs[m][s].size)
                rng = np.random.default_rng([plan.seed, m, s])
                tail = np.concatenate([np.zeros(offset), hybrid.synthesize_tail(model, n - offset, fs, rng)])
            else:
                if rays_ir is None:
                    rt_room.compute_rir()
                    rays_ir = [[np.asarray(ir, dtype=np.float64) for ir in per_mic] for per_mic in rt_room.rir]
                tail = rays_ir[m][s]
            ir, _ = hybrid.join(
                ism_rirs[m][s],
                tail,
                direct_index(distance_m, plan.sample_rate_hz),
                round(t_x * fs) + offset,
                fs,
            )
            row.append(ir)
        out.append(row)
    return out


def simulate(plan: SimulationPlan) -> SimulationOutput:
    """Impulse responses and metrics for every source-microphone pair of the plan."""
    started = time.perf_counter()
    polygon = plan.geometry.kind == "polygon"
    if plan.method == "hybrid":
        rirs = _hybrid_responses(plan, polygon)
    else:
        rirs = pyroom.compute_impulse_responses(pyroom.build_room(plan), polygon=polygon)
    simulated = time.perf_counter()

    pairs = []
    for s, source in enumerate(plan.sources):
        for m, mic in enumerate(plan.microphones):
            ir = trim_tail(rirs[m][s])
            min_samples = int(MIN_IR_S * plan.sample_rate_hz)
            if ir.size < min_samples:
                ir = np.pad(ir, (0, min_samples - ir.size))
            distance_m = math.dist(source.position_m, mic.position_m)
            index = direct_index(distance_m, plan.sample_rate_hz)
            room_values = room_parameters(ir, float(plan.sample_rate_hz), direct_index=index)
            plots = plot_data(ir, plan.sample_rate_hz, room_values.direct_index, room_values.decay_curves())
            parameters: dict[str, Any] = {**room_values.as_dict(), "plots": plots}
            pairs.append(
                PairOutput(
                    source_id=source.id,
                    microphone_id=mic.id,
                    distance_m=distance_m,
                    direct_index=index,
                    ir=ir.astype(np.float32),
                    parameters=parameters,
                )
            )
    return SimulationOutput(
        pairs=tuple(pairs),
        simulate_s=simulated - started,
        metrics_s=time.perf_counter() - simulated,
    )
