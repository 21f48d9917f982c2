"""Room facts and the classical reverberation estimates (Sabine, Eyring), per octave band.

Pure numpy; the measured-style metrics of a simulated impulse response (T30, C80, STI ...) come from
`sonalyze_acoustics.parameters`, so simulated and measured numbers are computed by the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

SPEED_OF_SOUND_M_S: Final = 343.0
"""Speed of sound used everywhere in the service (dry air near 20 degC; pyroomacoustics' default)."""

AIR_ATTENUATION_PER_M: Final[tuple[float, ...]] = (1.0e-4, 3.0e-4, 6.0e-4, 1.0e-3, 1.9e-3, 5.8e-3, 20.3e-3)
"""Energy attenuation of air m (1/m) at 125 Hz ... 8 kHz, 20 degC and 30-50 % relative humidity.

Vorländer (2008), *Auralization*, table of air absorption (the values pyroomacoustics uses); the sound
energy of a wave falls as ``exp(-m * distance_m)``. The same numbers go to the simulation engine.
"""


def _sabine_constant_s_per_m(speed_of_sound_m_s: float) -> float:
    # 24 ln(10) / c: 0.1611 s/m at 343 m/s
    return 24.0 * math.log(10.0) / speed_of_sound_m_s


def sabine_rt60_s(
    volume_m3: float,
    areas_m2: ArrayLike,
    absorption: ArrayLike,
    air_attenuation_per_m: ArrayLike | None = None,
    speed_of_sound_m_s: float = SPEED_OF_SOUND_M_S,
) -> NDArray[np.float64]:
    """Sabine's reverberation time per band.

    Parameters
    ----------
    volume_m3 : float
        Room volume V, > 0.
    areas_m2 : array_like, shape (n_surfaces,)
        Surface areas S_i, >= 0.
    absorption : array_like, shape (n_surfaces, n_bands)
        Random-incidence absorption coefficients alpha_i in [0, 1].
    air_attenuation_per_m : array_like, shape (n_bands,), optional
        Energy attenuation of air m (1/m); omitted means no air absorption.
    speed_of_sound_m_s : float
        c, default 343 m/s.

    Returns
    -------
    ndarray, shape (n_bands,)
        ``T = 24 ln(10) V / (c (sum_i S_i alpha_i + 4 m V))`` in seconds; ``inf`` when nothing absorbs.

    References
    ----------
    Kuttruff, H. (2009). Room Acoustics, 5th ed., eq. (5.24).
    """
    areas, alpha, air = _checked(volume_m3, areas_m2, absorption, air_attenuation_per_m)
    equivalent_area_m2 = areas @ alpha + 4.0 * air * volume_m3
    with np.errstate(divide="ignore"):
        return _sabine_constant_s_per_m(speed_of_sound_m_s) * volume_m3 / equivalent_area_m2


def eyring_rt60_s(
    volume_m3: float,
    areas_m2: ArrayLike,
    absorption: ArrayLike,
    air_attenuation_per_m: ArrayLike | None = None,
    speed_of_sound_m_s: float = SPEED_OF_SOUND_M_S,
) -> NDArray[np.float64]:
    """Eyring's reverberation time per band (diffuse field, any mean absorption).

    Parameters are those of `sabine_rt60_s`.

    Returns
    -------
    ndarray, shape (n_bands,)
        ``T = 24 ln(10) V / (c (-S ln(1 - alpha_mean) + 4 m V))`` with ``alpha_mean = sum_i S_i alpha_i / S``;
        0 when the surfaces absorb everything and there is no air term to add.

    References
    ----------
    Eyring, C. F. (1930). Reverberation time in "dead" rooms. JASA 1, 217-241.
    Kuttruff, H. (2009). Room Acoustics, 5th ed., eq. (5.25).
    """
    areas, alpha, air = _checked(volume_m3, areas_m2, absorption, air_attenuation_per_m)
    total_m2 = float(areas.sum())
    mean_alpha = areas @ alpha / total_m2
    with np.errstate(divide="ignore"):
        wall_term_m2 = -total_m2 * np.log1p(-mean_alpha)
        rt60 = _sabine_constant_s_per_m(speed_of_sound_m_s) * volume_m3 / (wall_term_m2 + 4.0 * air * volume_m3)
    return np.where(np.isinf(wall_term_m2), 0.0, rt60)


def mean_absorption(areas_m2: ArrayLike, absorption: ArrayLike) -> NDArray[np.float64]:
    """Area-weighted mean absorption per band, shape (n_bands,)."""
    areas = np.asarray(areas_m2, dtype=float)
    return areas @ np.asarray(absorption, dtype=float) / areas.sum()


def mean_free_path_m(volume_m3: float, surface_m2: float) -> float:
    """``4 V / S``, the mean distance sound travels between two reflections in a diffuse field."""
    if volume_m3 <= 0 or surface_m2 <= 0:
        raise ValueError(f"volume_m3 and surface_m2 must be > 0, got {volume_m3}, {surface_m2}")
    return 4.0 * volume_m3 / surface_m2


@dataclass(frozen=True, slots=True)
class ReverberationEstimates:
    """Per-band figures of one room (arrays of shape (n_bands,))."""

    mean_absorption: NDArray[np.float64]
    sabine_rt60_s: NDArray[np.float64]
    eyring_rt60_s: NDArray[np.float64]


def reverberation_estimates(
    volume_m3: float,
    areas_m2: ArrayLike,
    absorption: ArrayLike,
    air_attenuation_per_m: ArrayLike | None = None,
    speed_of_sound_m_s: float = SPEED_OF_SOUND_M_S,
) -> ReverberationEstimates:
    """Mean absorption, Sabine and Eyring RT60 in one call."""
    return ReverberationEstimates(
        mean_absorption=mean_absorption(areas_m2, absorption),
        sabine_rt60_s=sabine_rt60_s(volume_m3, areas_m2, absorption, air_attenuation_per_m, speed_of_sound_m_s),
        eyring_rt60_s=eyring_rt60_s(volume_m3, areas_m2, absorption, air_attenuation_per_m, speed_of_sound_m_s),
    )


def _checked(
    volume_m3: float, areas_m2: ArrayLike, absorption: ArrayLike, air_attenuation_per_m: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    areas = np.asarray(areas_m2, dtype=float)
    alpha = np.asarray(absorption, dtype=float)
    if volume_m3 <= 0:
        raise ValueError(f"volume_m3 must be > 0, got {volume_m3}")
    if areas.ndim != 1 or areas.size == 0 or np.any(areas < 0) or areas.sum() <= 0:
        raise ValueError("areas_m2 must be a non-empty 1-D array of areas >= 0 with a positive sum")
    if alpha.ndim != 2 or alpha.shape[0] != areas.size:
        raise ValueError(f"absorption must have shape (n_surfaces={areas.size}, n_bands), got {alpha.shape}")
    if np.any(alpha < 0) or np.any(alpha > 1):
        raise ValueError("absorption coefficients must lie in [0, 1]")
    air = np.zeros(alpha.shape[1]) if air_attenuation_per_m is None else np.asarray(air_attenuation_per_m, float)
    if air.shape != (alpha.shape[1],) or np.any(air < 0):
        raise ValueError(f"air_attenuation_per_m must have shape ({alpha.shape[1]},) and be >= 0")
    return areas, alpha, air
