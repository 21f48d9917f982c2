"""Energy decay of one band: Lundeby's noise floor and truncation point, and the compensated Schroeder curve.

Everything here works on the *squared* band signal ``e[n] = y[n]**2`` (energy per sample, in IR units
squared) from a start index (the direct sound, see :mod:`sonalyze_acoustics.parameters`) to the end.

- :func:`lundeby_truncation` finds the background noise power, the point where the late decay meets it,
  and the late decay line (Lundeby et al. 1995), iteratively.
- :func:`schroeder_curve` integrates backwards (Schroeder 1965) up to that point, with the noise power
  subtracted from every sample (Chu 1978) and the energy of the decay beyond the truncation point added
  back from the late decay line (Lundeby's compensation), so the curve is unbiased down to the
  truncation point.
- :func:`analyse_decay` runs both and reports the impulse-to-noise ratio and the usable decay range.

References
----------
M. R. Schroeder, "New method of measuring reverberation time", JASA 37, 409-412 (1965).
A. Lundeby, T. E. Vigran, H. Bietz, M. Vorlaender, "Uncertainties of measurements in room acoustics",
Acustica 81, 344-355 (1995).
W. T. Chu, "Comparison of reverberation measurements using Schroeder's impulse method and decay-curve
averaging method", JASA 63, 1444-1450 (1978).
ISO 3382-1:2009, Annex A and clause 5.3.3 (decay range and noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

LUNDEBY_INITIAL_BLOCK_S: Final = 0.010
"""Lundeby step 1: initial averaging interval in seconds (the paper suggests 10-50 ms)."""

LUNDEBY_INTERVALS_PER_10_DB: Final = 5
"""Lundeby step 5: averaging intervals per 10 dB of decay (paper: 3-10)."""

LUNDEBY_NOISE_MARGIN_DB: Final = 5.0
"""Lundeby step 8: the late-decay fit stops this many dB above the noise (paper: 5-10 dB)."""

LUNDEBY_FIT_RANGE_DB: Final = 20.0
"""Lundeby step 8: dynamic range in dB of the late-decay fit above its lower end (paper: 10-20 dB)."""

LUNDEBY_NOISE_DECAY_DB: Final = 10.0
"""Lundeby step 7: the noise is averaged from where the decay line is this many dB below the noise on."""

LUNDEBY_MAX_ITERATIONS: Final = 10
"""Upper bound on the iterations of steps 7-9 (the paper finds 5 enough)."""

MIN_NOISE_FRACTION: Final = 0.1
"""The noise is averaged over at least the last 10 % of the response (Lundeby step 2 and 7)."""

NOISE_FREE_SLOPE_DB: Final = 3.0
"""A response whose last 20 % still falls by more than this, at more than half its earlier rate, has no
noise floor in the data (a simulated or truncated response): its noise power is taken as 0."""

NOISE_FREE_SIGNIFICANCE: Final = 3.0
"""... provided that fall exceeds this many standard errors of the regression (a noise floor's block levels
scatter, and a band crossing its noise late still bends in its last 20 %: such ends were taken as noise free,
no noise was subtracted, and T20 came out 9-14 % long at 20 dB peak-to-noise; see :func:`_still_decaying`)."""

NOISE_FREE_END_FRACTION: Final = 1e-10
"""A noise-free response ends where less than this fraction of its energy (-100 dB) remains."""

NOISE_FREE_ITERATIONS: Final = 5
"""Refits of the late slope of a noise-free response on its tail-completed Schroeder curve."""

LATE_FIT_SETTLED_BLOCKS: Final = 3
"""Lundeby step 8: the late-decay fit ends before the first run of this many consecutive blocks below
noise + 5 dB (where the decay has reached the noise), not at the first single block below it."""

LATE_FIT_MIN_BLOCKS: Final = 5
"""Lundeby step 8: the late-decay fit range is widened upwards until it holds at least this many blocks."""

LATE_FIT_MIN_DROP_DB: Final = 10.0
"""... and until its fitted line falls by at least this much across the blocks it uses (Lundeby: 10-20 dB)."""

LATE_FIT_CLIFF_DB: Final = 6.0
"""Lundeby step 8: trailing blocks this far below the fitted line are a cliff (the response stops), left out."""

MIN_DECAY_DB: Final = 10.0
"""A band needs at least this much decay above its noise floor to be analysed at all."""


@dataclass(frozen=True)
class LundebyResult:
    """Outcome of Lundeby's iteration on one squared band signal.

    Attributes
    ----------
    crossing_index : int
        Index into the energy array (absolute) where the late decay line meets the noise floor; the
        Schroeder integral is truncated there. Equals ``len(energy)`` when no noise floor was found.
    noise_power : float
        Mean background-noise energy per sample, IR units squared; 0.0 when the data has no noise floor.
    late_slope_db_per_s : float
        Slope of the late decay line in dB/s (negative).
    late_level_db : float
        Level of the late decay line at ``start_index`` in dB re 1 (energy per sample).
    noise_free : bool
        True when the response ends before reaching a noise floor.
    n_iterations : int
        Iterations of steps 7-9 that were run.
    """

    crossing_index: int
    noise_power: float
    late_slope_db_per_s: float
    late_level_db: float
    noise_free: bool
    n_iterations: int


@dataclass(frozen=True)
class DecayAnalysis:
    """Compensated energy decay of one band from ``start_index`` on.

    Attributes
    ----------
    edc : numpy.ndarray
        Schroeder curve in IR units squared (sum of energy per sample from n to infinity), from
        ``start_index`` up to the truncation point; ``edc[0]`` is the total energy after ``start_index``.
    start_index : int
        Absolute index of ``edc[0]``.
    lundeby : LundebyResult
        Noise floor, truncation point and late decay line.
    inr_db : float
        Impulse-to-noise ratio: late decay line at ``start_index`` minus the noise level, in dB
        (the decay's dynamic range, Lundeby 1995); the available range of the decay if noise free.
    noise_floor_db : float
        Noise power per sample in dB re 1 (IR units squared); for noise-free data the level of the decay
        line at the end of the data.
    decay_range_db : float
        ``10 log10(edc[0] / edc[-1])``: how far the measured (not extrapolated) curve reaches, in dB.
    tail_energy : float
        Energy of the late decay line beyond the truncation point, included in ``edc``.
    """

    edc: np.ndarray
    start_index: int
    lundeby: LundebyResult
    inr_db: float
    noise_floor_db: float
    decay_range_db: float
    tail_energy: float


class NoDecayError(ValueError):
    """The band signal shows no decay above its noise floor (too noisy, silent or rising)."""


def lundeby_truncation(energy: np.ndarray, sample_rate_hz: float, *, start_index: int = 0) -> LundebyResult:
    """Estimate noise floor, truncation point and late decay of a squared impulse response (Lundeby 1995).

    Parameters
    ----------
    energy : numpy.ndarray
        1-D squared band impulse response ``y**2`` (>= 0), IR units squared.
    sample_rate_hz : float
        Sample rate in Hz, > 0.
    start_index : int
        Index of the direct sound; the decay is searched after it. ``0 <= start_index < len(energy) - 16``.

    Returns
    -------
    LundebyResult

    Raises
    ------
    ValueError
        For invalid inputs (naming the parameter).
    NoDecayError
        When no decay of at least 10 dB above the noise can be found.

    Notes
    -----
    1. average ``e`` in 10 ms blocks, 2. noise ``N`` = mean of the last 10 %, 3. regress the block levels
    (dB) from the peak to the first block within 10 dB of ``N``, 4. crossing point ``t_c`` where the line
    reaches ``N``, 5. new block length so 10 dB of decay spans 5 blocks, 7. ``N`` = mean of the raw energy
    from where the line lies 10 dB below ``N`` (at least the last 10 %), 8. regress the blocks between
    ``N + 25 dB`` and ``N + 5 dB``, 9. new ``t_c``; repeat 7-9 until ``t_c`` moves less than one block.

    Robustness (real and simulated rooms whose late block levels fluctuate by 10-20 dB): step 8's range
    ends where the blocks *settle* below ``N + 5 dB`` (three in a row), not at the first dip; dips are left
    out of the regression; the range is widened upwards until it holds five blocks and a line falling by
    10 dB (a decay that ends in a cliff, or a fluctuating plateau, gave two or three blocks or a flat line).
    When a later iteration finds no fit (blocks too coarse), the last valid iteration's line, noise and
    crossing point are returned instead of giving up.
    """
    energy = _check_energy(energy, "energy")
    if not np.isfinite(sample_rate_hz) or sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if not 0 <= start_index < energy.size - 16:
        raise ValueError(f"start_index must be between 0 and {energy.size - 17}, got {start_index}")
    return _lundeby(energy, float(sample_rate_hz), int(start_index))


def schroeder_curve(
    energy: np.ndarray, *, start_index: int, stop_index: int, noise_power: float = 0.0, tail_energy: float = 0.0
) -> np.ndarray:
    """Backward-integrated energy decay curve with noise subtraction and tail compensation.

    ``EDC[n] = sum_{k=n}^{stop-1} (e[k] - N) + E_tail`` for ``start <= n < stop``
    (Schroeder 1965; Chu 1978 for ``-N``; Lundeby 1995 for ``E_tail``), clipped below at a tiny positive
    value so its level in dB stays finite.

    Parameters
    ----------
    energy : numpy.ndarray
        1-D squared impulse response, IR units squared.
    start_index, stop_index : int
        Integration range ``[start_index, stop_index)``, ``0 <= start_index < stop_index <= len(energy)``.
    noise_power : float
        Noise energy per sample ``N`` (>= 0) subtracted from every sample.
    tail_energy : float
        Energy ``E_tail`` (>= 0) of the decay beyond ``stop_index``.

    Returns
    -------
    numpy.ndarray
        Shape ``(stop_index - start_index,)``, IR units squared.
    """
    energy = _check_energy(energy, "energy")
    if not 0 <= start_index < stop_index <= energy.size:
        raise ValueError(
            f"start_index and stop_index must satisfy 0 <= start_index < stop_index <= {energy.size}, "
            f"got {start_index}, {stop_index}"
        )
    if not np.isfinite(noise_power) or noise_power < 0:
        raise ValueError(f"noise_power must be >= 0, got {noise_power}")
    if not np.isfinite(tail_energy) or tail_energy < 0:
        raise ValueError(f"tail_energy must be >= 0, got {tail_energy}")
    return _schroeder(energy, start_index, stop_index, noise_power, tail_energy)


def analyse_decay(
    energy: np.ndarray, sample_rate_hz: float, *, start_index: int, reference_index: int | None = None
) -> DecayAnalysis:
    """Lundeby truncation plus the compensated Schroeder curve of one squared band signal.

    Parameters
    ----------
    energy : numpy.ndarray
        1-D squared band impulse response, IR units squared.
    sample_rate_hz : float
        Sample rate in Hz.
    start_index : int
        Absolute index where the curve starts (at or before the direct sound).
    reference_index : int, optional
        Absolute index of the direct sound (>= ``start_index``), where the impulse-to-noise ratio is read
        off the late decay line; default ``start_index``.

    Returns
    -------
    DecayAnalysis

    Raises
    ------
    NoDecayError
        When the band has no usable decay (see :func:`lundeby_truncation`).

    Notes
    -----
    Tail energy beyond the crossing point ``t_c`` from the late decay line ``L(t) = L_0 + s t`` (dB):
    ``E_tail = f_s * 10**(L(t_c)/10) / k`` with ``k = -s ln(10) / 10`` (1/s), the integral of the
    exponential from ``t_c`` to infinity.
    """
    lundeby = lundeby_truncation(energy, sample_rate_hz, start_index=start_index)
    if reference_index is None:
        reference_index = start_index
    if not start_index <= reference_index < lundeby.crossing_index:
        raise ValueError(
            f"reference_index must be between start_index {start_index} and the truncation point "
            f"{lundeby.crossing_index}, got {reference_index}"
        )
    energy = np.asarray(energy, dtype=np.float64)
    return _analyse(energy, float(sample_rate_hz), int(start_index), int(reference_index), lundeby)


# ---------------------------------------------------------------------------------------------------------
# private helpers


def _check_energy(energy: np.ndarray, name: str) -> np.ndarray:
    energy = np.asarray(energy, dtype=np.float64)
    if energy.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {energy.shape}")
    if energy.size < 32:
        raise ValueError(f"{name} must have at least 32 samples, got {energy.size}")
    if not np.all(np.isfinite(energy)) or np.any(energy < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return energy


def _db(value: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(value, 1e-300))


def _block_levels_db(energy: np.ndarray, n_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy of consecutive blocks in dB and the block centres in samples (relative to energy[0])."""
    n_blocks = energy.size // n_block
    means = energy[: n_blocks * n_block].reshape(n_blocks, n_block).mean(axis=1)
    centres = (np.arange(n_blocks) + 0.5) * n_block
    return _db(means), centres


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``y = a + b x``; returns ``(a, b)``."""
    x_mean = x.mean()
    y_mean = y.mean()
    dx = x - x_mean
    slope = float(np.dot(dx, y - y_mean) / np.dot(dx, dx))
    return float(y_mean - slope * x_mean), slope


def _late_fit(levels_db: np.ndarray, centres: np.ndarray, noise_db: float, peak: int) -> tuple[float, float] | None:
    """Lundeby step 8: regression of the block levels between noise + 25 dB and noise + 5 dB after the peak
    (widened upwards when that holds too little decay), with the noise power subtracted from each block
    before taking its level. None when no range holds three blocks."""
    after = levels_db[peak:]
    upper = noise_db + LUNDEBY_NOISE_MARGIN_DB + LUNDEBY_FIT_RANGE_DB
    lower = noise_db + LUNDEBY_NOISE_MARGIN_DB
    # The fit ends where the decay settles below `lower`: at the first run of LATE_FIT_SETTLED_BLOCKS blocks
    # below it. A lone block dipping below it is a fluctuation of the decay (a sparse late field, a
    # ray-traced tail: the tail of a room stays 10-20 dB above the noise after such a dip), not the noise;
    # stopping there left two or three blocks and a slope of any value.
    below = after < lower
    if not below[1:].any():
        return None
    n_run = min(LATE_FIT_SETTLED_BLOCKS, below.size - 1)
    runs = 1 + np.flatnonzero(np.convolve(below[1:], np.ones(n_run), mode="valid") == n_run)
    last = int(runs[0] if runs.size else 1 + np.flatnonzero(below[1:])[0])
    # The fit starts at the first block below `upper`. The range is widened upwards (or reaches the peak)
    # until it holds LATE_FIT_MIN_BLOCKS blocks and its line falls by LATE_FIT_MIN_DROP_DB: a decay that
    # ends in a cliff (a response cut short above the noise, as simulated rooms are) leaves too few blocks,
    # and a fluctuating plateau near the end of a sparse tail leaves a flat or rising line.
    noise_power = 10.0 ** (noise_db / 10.0)
    while True:
        below_upper = np.flatnonzero(after[:last] < upper)
        first = int(below_upper[0]) if below_upper.size else 0
        selected = first + np.flatnonzero(after[first:last] >= lower)  # dips below `lower` carry no level
        fit = None
        if selected.size >= 3:
            # Fit the decay without the noise (Chu): at noise + 5 dB the noise alone lifts a block by 1.2 dB.
            clean_db = _db(10.0 ** (after[selected] / 10.0) - noise_power)
            x = centres[peak + selected]
            fit = fit_line(x, clean_db)
            # A block straddling a cliff (part decay, part nothing) lies far below the line through the
            # blocks before it, and would steepen the fit.
            while x.size > 3:
                before = fit_line(x[:-1], clean_db[:-1])
                if clean_db[-1] >= before[0] + before[1] * x[-1] - LATE_FIT_CLIFF_DB:
                    break
                x, clean_db, fit = x[:-1], clean_db[:-1], before
            drop_db = -fit[1] * (x[-1] - x[0])
            if x.size >= LATE_FIT_MIN_BLOCKS and drop_db >= LATE_FIT_MIN_DROP_DB:
                return fit
        if first == 0:
            return fit
        upper += LUNDEBY_FIT_RANGE_DB / 4


def _lundeby(energy: np.ndarray, sample_rate_hz: float, start_index: int) -> LundebyResult:
    decay = energy[start_index:]
    n_total = decay.size
    n_tail = max(int(MIN_NOISE_FRACTION * n_total), 8)
    tail = decay[-n_tail:]
    if tail.mean() <= 1e-30 * max(decay.max(), 1e-300) or _still_decaying(decay, sample_rate_hz):
        return _noise_free_lundeby(decay, sample_rate_hz, start_index)

    noise_power = float(tail.mean())
    noise_db = float(_db(noise_power))
    n_block = max(int(round(LUNDEBY_INITIAL_BLOCK_S * sample_rate_hz)), 1)
    levels_db, centres = _block_levels_db(decay, n_block)
    if levels_db.size < 4:
        raise NoDecayError("the response is too short to find a decay")
    peak = int(np.argmax(levels_db))
    near_noise = np.flatnonzero(levels_db[peak + 1 :] < noise_db + 10.0)
    stop = peak + 1 + int(near_noise[0]) if near_noise.size else levels_db.size
    if stop - peak < 2 or levels_db[peak] - noise_db < MIN_DECAY_DB:
        raise NoDecayError(
            f"no decay above the noise floor (peak only {levels_db[peak] - noise_db:.1f} dB above the noise)"
        )
    intercept_db, slope_db_per_sample = fit_line(centres[peak:stop], levels_db[peak:stop])
    if slope_db_per_sample >= 0:
        raise NoDecayError("the band's energy does not decay")
    crossing = (noise_db - intercept_db) / slope_db_per_sample

    n_iterations = 0
    last_good: tuple[float, float, float, float] | None = None
    for n_iterations in range(1, LUNDEBY_MAX_ITERATIONS + 1):  # noqa: B007 (reported after the loop)
        samples_per_10_db = 10.0 / -slope_db_per_sample
        n_block = int(np.clip(round(samples_per_10_db / LUNDEBY_INTERVALS_PER_10_DB), 1, n_total // 8))
        levels_db, centres = _block_levels_db(decay, n_block)
        noise_start = int(min(crossing + LUNDEBY_NOISE_DECAY_DB * samples_per_10_db / 10.0, n_total - n_tail))
        noise_power = float(decay[max(noise_start, 0) :].mean())
        noise_db = float(_db(noise_power))
        peak = int(np.argmax(levels_db))
        fit = _late_fit(levels_db, centres, noise_db, peak)
        if fit is None or fit[1] >= 0:
            if last_good is None:
                raise NoDecayError("the late decay could not be fitted above the noise floor")
            # A later iteration found no fit range (its blocks came out too coarse for the decay): the
            # previous iteration's line, noise and crossing point are a consistent and valid estimate.
            noise_power, intercept_db, slope_db_per_sample, crossing = last_good
            break
        intercept_db, slope_db_per_sample = fit
        new_crossing = float(np.clip((noise_db - intercept_db) / slope_db_per_sample, 1.0, n_total))
        last_good = (noise_power, intercept_db, slope_db_per_sample, new_crossing)
        moved = abs(new_crossing - crossing)
        crossing = new_crossing
        if moved < n_block:
            break

    return LundebyResult(
        crossing_index=start_index + int(round(crossing)),
        noise_power=noise_power,
        late_slope_db_per_s=slope_db_per_sample * sample_rate_hz,
        late_level_db=intercept_db,
        noise_free=False,
        n_iterations=n_iterations,
    )


def _still_decaying(decay: np.ndarray, sample_rate_hz: float) -> bool:
    """True when the response is still decaying at its end (no noise floor reached).

    Block levels (10 ms) are regressed against time; a noise floor gives a flat line, a decay a slope like
    the rest of the response. Still decaying: over the last 20 % and over the last 10 % of the response the
    slope is more than half the slope before and the fall exceeds :data:`NOISE_FREE_SLOPE_DB` (half of it
    over the last 10 %) and :data:`NOISE_FREE_SIGNIFICANCE` standard errors of the regression. A decay that
    meets its noise floor shortly before the last 20 % still falls there, but its last 10 % lies on the floor.
    """
    n_block = max(int(round(LUNDEBY_INITIAL_BLOCK_S * sample_rate_hz)), 1)
    levels_db, centres = _block_levels_db(decay, n_block)
    if levels_db.size == 0:  # shorter than one block: nothing to judge
        return False
    n_last = max(int(0.2 * levels_db.size), 3)
    peak = int(np.argmax(levels_db))
    if levels_db.size - n_last - peak < 3:
        return False
    _, slope_before = fit_line(centres[peak:-n_last], levels_db[peak:-n_last])
    if slope_before >= 0:
        return False
    n_half = max(n_last // 2, 3)
    return _falls(centres[-n_last:], levels_db[-n_last:], slope_before, NOISE_FREE_SLOPE_DB) and _falls(
        centres[-n_half:], levels_db[-n_half:], slope_before, NOISE_FREE_SLOPE_DB / 2.0
    )


def _falls(x: np.ndarray, levels_db: np.ndarray, slope_before: float, min_drop_db: float) -> bool:
    """The block levels fall at more than half ``slope_before``, by more than ``min_drop_db`` and the scatter.

    A noise floor's 10 ms block levels scatter by several dB (few degrees of freedom in a low octave), so a
    chance downward trend of the last blocks must not pass for a decay."""
    intercept, slope = fit_line(x, levels_db)
    span = float(x[-1] - x[0])
    drop_db = -slope * span
    residual = levels_db - (intercept + slope * x)
    spread = float(np.sum((x - x.mean()) ** 2))
    drop_error_db = span * float(np.sqrt(np.sum(residual**2) / max(x.size - 2, 1) / spread)) if spread > 0 else 0.0
    return bool(slope < 0.5 * slope_before and drop_db > max(min_drop_db, NOISE_FREE_SIGNIFICANCE * drop_error_db))


def _noise_free_lundeby(decay: np.ndarray, sample_rate_hz: float, start_index: int) -> LundebyResult:
    """No noise floor in the data (a simulated or already truncated response).

    The data ends where less than 1e-10 (-100 dB) of the energy remains. The late slope is the regression of
    the Schroeder curve (dB) from -5 dB down to its level at the start of the last 10 % of the data
    (image-source responses are too sparse for block levels), the curve completed with the tail the slope
    implies (a few fixed-point iterations), and the late line passes through the mean energy of that last
    10 %: it supplies the tail beyond the end, as for a noisy response.
    """
    total = float(decay.sum())
    if total <= 0:
        raise NoDecayError("the band is silent")
    remaining = np.cumsum(decay[::-1])[::-1]
    end = int(np.searchsorted(-remaining, -NOISE_FREE_END_FRACTION * total))
    end = min(max(end, 32), decay.size)
    n_tail = max(int(MIN_NOISE_FRACTION * end), 8)
    edc_db = _db(remaining[:end] / total)
    bottom_db = float(edc_db[end - n_tail])
    if bottom_db > -MIN_DECAY_DB:
        raise NoDecayError(f"the band shows only {-bottom_db:.0f} dB of decay (less than {MIN_DECAY_DB:.0f} dB)")
    index = np.flatnonzero(edc_db[: end - n_tail] <= -5.0)
    if index.size < 3:
        raise NoDecayError("the band's decay is too short to fit")
    index = index[:: max(index.size // 2000, 1)]
    tail_level_db = float(_db(decay[end - n_tail : end].mean()))
    tail_power = 10.0 ** (tail_level_db / 10.0)
    curve = remaining[index]
    # The plain curve droops towards the end of the data; refit on the curve completed by the tail the
    # previous fit implies, until the slope settles.
    for _ in range(NOISE_FREE_ITERATIONS):
        _, slope_db_per_sample = fit_line(index.astype(np.float64), _db(curve / curve[0]))
        if slope_db_per_sample >= 0:
            raise NoDecayError("the band's energy does not decay")
        decay_per_sample = -slope_db_per_sample * np.log(10.0) / 10.0
        tail_energy = tail_power * 10.0 ** (slope_db_per_sample * n_tail / 2.0 / 10.0) / decay_per_sample
        curve = remaining[index] + tail_energy
    return LundebyResult(
        crossing_index=start_index + end,
        noise_power=0.0,
        late_slope_db_per_s=slope_db_per_sample * sample_rate_hz,
        late_level_db=tail_level_db - slope_db_per_sample * (end - n_tail / 2.0),
        noise_free=True,
        n_iterations=0,
    )


def _tail_energy(lundeby: LundebyResult, start_index: int, sample_rate_hz: float) -> float:
    slope_db_per_sample = lundeby.late_slope_db_per_s / sample_rate_hz
    level_db = lundeby.late_level_db + slope_db_per_sample * (lundeby.crossing_index - start_index)
    decay_per_sample = -slope_db_per_sample * np.log(10.0) / 10.0
    return float(10.0 ** (level_db / 10.0) / decay_per_sample)


def _schroeder(energy: np.ndarray, start: int, stop: int, noise_power: float, tail_energy: float) -> np.ndarray:
    segment = energy[start:stop] - noise_power
    edc = np.cumsum(segment[::-1])[::-1] + tail_energy
    floor = max(tail_energy, float(np.abs(segment).max()), 1e-300) * 1e-12
    return np.maximum(edc, floor)


def _analyse(
    energy: np.ndarray, sample_rate_hz: float, start_index: int, reference_index: int, lundeby: LundebyResult
) -> DecayAnalysis:
    stop = min(max(lundeby.crossing_index, start_index + 2), energy.size)
    tail_energy = _tail_energy(lundeby, start_index, sample_rate_hz)
    edc = _schroeder(energy, start_index, stop, lundeby.noise_power, tail_energy)
    if lundeby.noise_free:
        n_decay = stop - start_index
        noise_floor_db = lundeby.late_level_db + lundeby.late_slope_db_per_s / sample_rate_hz * n_decay
    else:
        noise_floor_db = float(_db(lundeby.noise_power))
    reference_level_db = lundeby.late_level_db + lundeby.late_slope_db_per_s / sample_rate_hz * (
        reference_index - start_index
    )
    return DecayAnalysis(
        edc=edc,
        start_index=start_index,
        lundeby=lundeby,
        inr_db=float(reference_level_db - noise_floor_db),
        noise_floor_db=float(noise_floor_db),
        decay_range_db=float(_db(edc[0]) - _db(edc[-1])),
        tail_energy=tail_energy,
    )
