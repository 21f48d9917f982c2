"""Ray-tracing settings for methods ``ray_tracing`` and ``hybrid`` (pure; the engine runs in `simulate`).

The hybrid method traces rays only for reflections above ``max_order``; below it the image sources give
the exact early arrivals. Rays stop when their energy falls 70 dB or after ``time_threshold_s``.
"""

from __future__ import annotations

import math
from typing import Final

from sonalyze_simulation.acoustics.metrics import SPEED_OF_SOUND_M_S
from sonalyze_simulation.plan import RayTracingPlan

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
