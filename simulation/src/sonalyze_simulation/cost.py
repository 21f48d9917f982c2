"""The cost guard's estimate: how many seconds of one core a simulation will take, and of what.

The model counts the work each stage does (image sources visited, ray hops, samples synthesised and
analysed) and multiplies by per-unit times measured on the reference machine (2-core x86 VM;
``bench/simulation.py`` reprints them). It is meant to be right within a factor of ~2, which is all a
guard needs: refuse what would pin a worker for minutes, say which knob drives the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# seconds per unit of work, measured with pyroomacoustics 0.10.1 (see bench/simulation.py)
SHOEBOX_IMAGE_S: Final = 1.8e-6
"""Per image source and microphone: lattice enumeration plus writing its filtered arrival."""
POLYGON_IMAGE_VISIT_S: Final = 0.6e-6
"""Per node of the general image-source search (visibility tests included)."""
POLYGON_BRANCHING_DIVISOR: Final = 1.77
"""The search visits about ``(n_walls - 1) / 1.77`` children per node: invalid reflections are pruned."""
RAY_HOP_PER_WALL_S: Final = 5.5e-8
"""Per ray reflection and wall tested, in pyroomacoustics' general engine, which traces every room's rays
(a shoebox's too, see `sonalyze_simulation.acoustics.pyroom`). Per hop in a 6-surface room: 3.1-3.9e-7 s
in 3, 30 and 200 m halls (200-20 000 rays, load 2-3, 2026-12-02; 2.6e-7 s on a quieter machine before, and
1.8e-7 s in ``ShoeBox``'s analytic engine, which this was 2.5e-8 for)."""
RAY_HOP_PER_MIC_S: Final = 1.5e-8
"""Per ray reflection and receiver tested."""
ISM_RESPONSE_SAMPLE_S: Final = 1.8e-6
"""Per sample of a short image-source response (per-band arrivals, band filtering, air absorption). The
response spans the farthest image: about ``max_order`` x the room's longest extent, far beyond RT60 in a
large room (bench/cost_guard.py: a 200 m hall at order 80 is 47 s of response)."""
ISM_RESPONSE_LONG_SAMPLES: Final = 670_000
"""A response this long costs twice as much per sample, and so on in proportion: the per-band arrays outgrow
the caches (same images, twice the length: 10.4 s -> 30.1 s of CPU for a 100 -> 200 m hall at order 80)."""
SPEED_OF_SOUND_M_S: Final = 343.0
SYNTH_SAMPLE_S: Final = 2.5e-6
"""Per output sample of the hybrid's tail (`sonalyze_simulation.hybrid`: noise per band, filtering, summing)."""
RAY_RIR_SAMPLE_S: Final = 3.5e-6
"""Per output sample of method ray_tracing's response, which pyroomacoustics builds itself (``compute_rt_rir``:
the pulse sequence filtered into each band, weighted by the histogram, summed). Measured 2.1-6.5 us (median
3.6 in halls of 10 m and more) in bench/cost_guard.py's 3-200 m halls at 16/48 kHz, 2 000 rays, load ~2
(2026-12-02)."""
RAY_RIR_PULSE_S: Final = 1.1e-5
"""Per pulse of that response's random sequence: pyroomacoustics draws the pulses one by one in a Python
loop (``poisson_sequence``, ``directional_sequence``), per source-microphone pair. Measured 8.9-18 us
(median 11.7) in the same runs: 0.8 s of the 1.4 s a 200 m hall takes at 16 kHz, which the per-sample
term alone priced at 0.4 s (the 2.0-3.4x under-estimate of method ray_tracing, issue 14)."""
RAY_RIR_MAX_PULSE_RATE_HZ: Final = 10_000.0
"""The sequence's pulse density grows as ``4 pi c^3 t^2 / V`` up to this many per second
(pyroomacoustics' ``max_rate``)."""
RAY_RIR_PAIR_S: Final = 0.05
"""Per source-microphone pair of method ray_tracing, what does not grow with the response: ``compute_rt_rir``
took 0.065-0.077 s at 16 kHz for 0.7-2 s responses, of which the per-sample term explains 0.01-0.03 s."""
METRICS_SAMPLE_S: Final = 0.5e-6
"""Per sample of a response analysed by the shared metrics (octave filters, Schroeder, STI)."""
METRICS_FIRST_SECOND_S: Final = 0.06
"""Per pair and second of response, over its first second only: the shared metrics take 0.02 s for a 0.1 s
response and 0.08-0.1 s from about 1 s on, at 16 and 48 kHz alike, before the per-sample term shows (warm
worker, 2026-12-02). Without it a 30 m hall at ISM order 10 (0.9 s at 48 kHz) took 1.8-2.2x its
estimate."""
BASE_S: Final = 0.04
"""Fixed cost of one run in a worker that has imported the engine (room set-up, the metrics on the shortest
response): 0.03-0.05 s of CPU at ISM order 0 and 16 kHz, 0.05-0.09 s at 48 kHz (bench/cost_guard.py). The service's workers import it when they
start (`sonalyze_simulation.worker.warm_up`); the bench counted that import (0.12 s) until 2026-12-02, so this
was 0.1."""


@dataclass(frozen=True, slots=True)
class CostInputs:
    n_sources: int
    n_microphones: int
    method: str
    max_order: int | None
    is_shoebox: bool
    n_walls_total: int
    sample_rate_hz: int
    expected_rt60_s: float
    """Longest band's reverberation estimate (Sabine, with air if used): sets response lengths."""
    min_band_decay_per_hop: float
    """Energy lost per reflection (plus air over a mean free path) in the slowest band, in nepers."""
    n_rays: int | None
    ray_time_threshold_s: float
    longest_extent_m: float = 0.0
    """The room's largest extent (longest side or height): images of order ``n`` lie up to ``n`` times that away."""
    mean_free_path_m: float = 1.0
    """A ray's hops are this long on average: rays stopped by the time limit make ``c t / mfp`` of them."""
    volume_m3: float = 0.0
    """Sets how fast method ray_tracing's pulse sequence reaches its full density (0: full from the start)."""


@dataclass(frozen=True, slots=True)
class CostEstimate:
    image_sources_s: float
    ray_tracing_s: float
    synthesis_s: float
    metrics_s: float
    base_s: float

    @property
    def total_s(self) -> float:
        return self.image_sources_s + self.ray_tracing_s + self.synthesis_s + self.metrics_s + self.base_s

    def largest(self) -> str:
        parts = {
            "image_sources": self.image_sources_s,
            "ray_tracing": self.ray_tracing_s,
            "synthesis": self.synthesis_s,
            "metrics": self.metrics_s,
        }
        return max(parts, key=lambda k: parts[k])

    def as_dict(self) -> dict[str, float]:
        return {
            "image_sources_s": round(self.image_sources_s, 3),
            "ray_tracing_s": round(self.ray_tracing_s, 3),
            "synthesis_s": round(self.synthesis_s, 3),
            "metrics_s": round(self.metrics_s, 3),
            "total_s": round(self.total_s, 3),
        }


def shoebox_image_count(max_order: int) -> int:
    """Image sources of a 3-D shoebox up to ``max_order`` (the count pyroomacoustics enumerates)."""
    n = max_order
    return 1 + 2 * n * (2 * n * n + 3 * n + 4) // 3


def polygon_image_visits(max_order: int, n_walls: int) -> float:
    """Estimated nodes of the general image-source search up to ``max_order``."""
    branching = max(1.0, (n_walls - 1) / POLYGON_BRANCHING_DIVISOR)
    return 1.0 + sum(n_walls * branching ** (k - 1) for k in range(1, max_order + 1))


def ism_response_length_s(max_order: int, longest_extent_m: float) -> float:
    """How long an image-source response runs: up to the farthest image, ``max_order`` extents away (plus
    about half an extent: the source and microphone are inside the room)."""
    return (max_order + 0.5) * longest_extent_m / SPEED_OF_SOUND_M_S


def ray_rir_pulse_count(duration_s: float, volume_m3: float) -> float:
    """Pulses in pyroomacoustics' random sequence for a ray-traced response of ``duration_s``: the integral of
    ``min(4 pi c^3 t^2 / V, RAY_RIR_MAX_PULSE_RATE_HZ)`` over the response."""
    if volume_m3 <= 0:
        return RAY_RIR_MAX_PULSE_RATE_HZ * duration_s
    growth = 4 * math.pi * SPEED_OF_SOUND_M_S**3 / volume_m3
    saturated_s = math.sqrt(RAY_RIR_MAX_PULSE_RATE_HZ / growth)
    if duration_s <= saturated_s:
        return growth * duration_s**3 / 3
    return RAY_RIR_MAX_PULSE_RATE_HZ * (duration_s - 2 * saturated_s / 3)


def estimate_cost(inputs: CostInputs) -> CostEstimate:
    """Seconds of one core per stage; see the module docstring for the model."""
    n_pairs = inputs.n_sources * inputs.n_microphones
    uses_ism = inputs.method in ("ism", "hybrid")
    uses_rt = inputs.method in ("ray_tracing", "hybrid")
    order = inputs.max_order or 0

    image_s = 0.0
    ism_length_s = 0.0
    if uses_ism:
        if inputs.is_shoebox:
            image_s = SHOEBOX_IMAGE_S * shoebox_image_count(order) * n_pairs
        else:
            visits = polygon_image_visits(order, inputs.n_walls_total)
            image_s = POLYGON_IMAGE_VISIT_S * visits * inputs.n_sources * (1 + 0.25 * inputs.n_microphones)
        ism_response_s = ism_response_length_s(order, inputs.longest_extent_m)
        n_samples = ism_response_s * inputs.sample_rate_hz
        image_s += ISM_RESPONSE_SAMPLE_S * n_samples * (1.0 + n_samples / ISM_RESPONSE_LONG_SAMPLES) * n_pairs
        # what the metrics analyse: at order 0 only the direct sound, which the tail cut leaves at 0.1 s (a
        # 200 m hall's took 0.04 s of CPU at 16 kHz, as a 3 m room's)
        ism_length_s = ism_response_s if inputs.method == "ism" and order > 0 else 0.0

    ray_s = 0.0
    rt_length_s = 0.0
    if uses_rt and inputs.n_rays:
        hops = min(
            math.log(1e7) / max(inputs.min_band_decay_per_hop, 1e-6),
            inputs.ray_time_threshold_s * SPEED_OF_SOUND_M_S / max(inputs.mean_free_path_m, 1.0),
        )
        per_hop_s = RAY_HOP_PER_WALL_S * inputs.n_walls_total + RAY_HOP_PER_MIC_S * inputs.n_microphones
        ray_s = inputs.n_rays * inputs.n_sources * hops * per_hop_s
        rt_length_s = min(1.2 * inputs.expected_rt60_s, inputs.ray_time_threshold_s)

    length_s = max(ism_length_s, rt_length_s, 0.1)
    length_samples = length_s * inputs.sample_rate_hz
    synthesis_s = 0.0
    if inputs.method == "ray_tracing":
        pulses = ray_rir_pulse_count(rt_length_s, inputs.volume_m3)
        per_pair_s = RAY_RIR_PAIR_S + RAY_RIR_SAMPLE_S * rt_length_s * inputs.sample_rate_hz + RAY_RIR_PULSE_S * pulses
        synthesis_s = per_pair_s * n_pairs
    elif uses_rt:
        synthesis_s = SYNTH_SAMPLE_S * rt_length_s * inputs.sample_rate_hz * n_pairs
    metrics_s = (METRICS_FIRST_SECOND_S * min(length_s, 1.0) + METRICS_SAMPLE_S * length_samples) * n_pairs
    return CostEstimate(image_s, ray_s, synthesis_s, metrics_s, BASE_S)


def advice(estimate: CostEstimate, inputs: CostInputs) -> str:
    """What to reduce, for the stage that dominates."""
    n_pairs = inputs.n_sources * inputs.n_microphones
    pairs = f"the number of source x microphone pairs (now {n_pairs})"
    match estimate.largest():
        case "image_sources":
            extra = "" if inputs.is_shoebox else ", simplify the floor plan (fewer walls)"
            extra += f", {pairs}" if n_pairs > 1 else ""
            return f"reduce max_order (now {inputs.max_order}){extra}, or use method=hybrid with max_order 2-3"
        case "ray_tracing":
            return f"reduce n_rays (now {inputs.n_rays}), the number of sources, or the room's reverberation"
        case "synthesis":
            return f"reduce sample_rate_hz (now {inputs.sample_rate_hz}) or {pairs}"
        case _:
            return f"reduce {pairs} or sample_rate_hz (now {inputs.sample_rate_hz})"
