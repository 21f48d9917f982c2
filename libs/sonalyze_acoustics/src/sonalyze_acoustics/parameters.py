"""ISO 3382-1 room-acoustic parameters and STI of one impulse response, per octave band and broadband.

:func:`room_parameters` is the entry point used by the measurement and simulation services:

1. find the direct sound (:func:`find_direct_sound`),
2. split into octave bands 125 Hz-8 kHz plus a broadband row with time-reversed Butterworth filters
   (:mod:`sonalyze_acoustics.bands`),
3. per band: Lundeby noise floor and truncation, noise-compensated Schroeder curve
   (:mod:`sonalyze_acoustics.decay`),
4. per band: EDT, T20, T30, rt60, C50, C80, D50, DRR, each judged against that band's own decay range and
   noise floor; a value that cannot be trusted is None with a reason,
5. STI from the seven compensated band energies (:mod:`sonalyze_acoustics.sti`).

Definitions (ISO 3382-1:2009, Annex A), with ``E(a, b)`` the band energy between times ``a`` and ``b`` after
the direct sound and ``EDC`` the Schroeder curve normalised to the total energy:

- EDT: ``-60 / s`` with ``s`` (dB/s) the least-squares slope of ``EDC_dB`` between 0 and -10 dB,
  T20 between -5 and -25 dB, T30 between -5 and -35 dB (extrapolated to 60 dB, ISO 3382-1 Annex A).
- ``C50 = 10 log10(E(0, 50 ms) / E(50 ms, inf))``, ``C80`` likewise with 80 ms, ``D50 = E(0, 50 ms) / E(0, inf)``.
- ``DRR = 10 log10(E_direct / E_reverberant)``: the direct part is the response windowed from
  :data:`DIRECT_PRE_S` before the onset to :data:`DIRECT_WINDOW_S` after the peak (raised-cosine ramps of
  :data:`DIRECT_RAMP_S`), band-filtered on its own; the reverberant part is the band energy of the rest, so
  the interference of the two inside a band's long filter response counts for neither. Reflections arriving
  within about 1.5 ms of the direct sound count as direct. A measured response (``band_limits_hz`` given) has
  a direct sound band-limited by the sweep, whose low-frequency wings outlast the window: each band's direct
  energy is scaled by the share of that band-limited pulse the window holds, and the wings' energy is taken
  off the reverberant side (:func:`_direct_window_gains`; without it DRR came out 1.5-2.5 dB low at 125 Hz).
- The 50 and 80 ms boundaries (and the start of the integration) move by the band filter's energy advance
  (:func:`sonalyze_acoustics.bands.band_energy_delay_s`), since the time-reversed filter moves energy earlier.

Reliability rules (decided by measuring on :mod:`sonalyze_acoustics.synthetic` responses, see the README):

- ``rt60_s`` is T30 when the measured curve reaches :data:`DECAY_MARGIN_DB` below -35 dB, else T20 when it
  reaches 2 dB below -25 dB (:data:`T20_DECAY_MARGIN_DB`), else None (the curve is noise compensated, so 5 dB suffices where
  ISO 3382-1 asks 10 dB for plain curves; 125 and 250 Hz use :data:`LOW_BAND_DECAY_MARGIN_DB`).
  T20/T30 are also None when their regression is not straight (:data:`MAX_NONLINEARITY_PERMILLE`) or when
  T30 and T20 disagree by more than :data:`MAX_CURVATURE`.
- EDT needs a decay range of :data:`EDT_MIN_DECAY_RANGE_DB`; EDT and the energy ratios need an
  impulse-to-noise ratio of :data:`MIN_INR_ENERGY_DB`.

References
----------
ISO 3382-1:2009, Acoustics - Measurement of room acoustic parameters - Part 1: Performance spaces.
M. R. Schroeder (1965), A. Lundeby et al. (1995): see :mod:`sonalyze_acoustics.decay`.
IEC 60268-16:2020: see :mod:`sonalyze_acoustics.sti`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, TypedDict

import numpy as np

from sonalyze_acoustics import bands as _bands
from sonalyze_acoustics import decay as _decay
from sonalyze_acoustics import sti as _sti

OCTAVE_BANDS_HZ: Final = _bands.OCTAVE_BANDS_HZ
"""Nominal octave bands in Hz: (125, 250, 500, 1000, 2000, 4000, 8000)."""

DECAY_MARGIN_DB: Final = 5.0
"""The measured (not extrapolated) Schroeder curve must reach this far below the end of the T20 and T30
evaluation ranges (the curve is noise compensated, so less than ISO 3382-1's 10 dB for plain curves)."""

T20_DECAY_MARGIN_DB: Final = 2.0
"""T20 needs less margin than T30: the compensated curve (Chu's noise subtraction, Lundeby's tail) is unbiased
down to the truncation point, so the measured curve reaching 2 dB below T20's -25 dB end suffices (ISO 3382-1's
10 dB margin is for plain curves). At 20 dB peak-to-noise this reports T20 in 23 of the 25 mid bands of the
test grid's rooms with T <= 2 s (was 20 with 5 dB), all within 5 %; at 40 and 60 dB nothing changes
(bench/noisy_coverage.py, bench/analysis.py). 0 dB reported all 25, but a 2.4 s room measured with the 10 s
sweep at 20 dB then gave a 500 Hz T20 12 % short (a long decay's noise estimate taken too close to its
crossing point); 2 dB nulls it. T30 keeps 5 dB: at 0 dB one band of a 0.35 s room at 20 dB came out 12 % long."""

LOW_BAND_DECAY_MARGIN_DB: Final = {125: 10.0, 250: 7.0}
"""Larger margins for the low bands, whose decays have the fewest degrees of freedom (bandwidth x time) and
the widest filter overlap: measured T30 errors at 5-7 dB margin reached 11 % at 125 Hz and 6 % at 250 Hz."""

EDT_MIN_DECAY_RANGE_DB: Final = 25.0
"""EDT needs a decay range of at least this (its -10 dB end plus 15 dB): with less, the early curve is
dominated by the noise compensation and EDT scatters by tens of per cent in the low bands (measured)."""

EDT_MIN_SPAN_S: Final = 0.03
"""EDT is None when the curve falls from the direct sound to -10 dB in less than this: with a strong direct
sound (DRR above about +5 dB) the EDT range holds only a few dB of actual decay, lasting a few ms, and the
regression then follows the band filter's smearing of the direct sound (measured errors 10-20 %)."""

EDT_SPAN_PER_DELAY: Final = 6.0
"""... and in less than this many times the band filter's energy delay (48 ms at 125 Hz, 24 ms at 250 Hz)."""

MAX_NONLINEARITY_PERMILLE: Final = 50.0
"""T20 and T30 are None when their regression's non-linearity ``1000 (1 - r**2)`` exceeds this.
ISO 3382-1 Annex B calls values above 10 per mille a sign of a curved decay; the beating of real (and
synthetic) decays reaches 15 per mille on straight decays, so the limit is looser and the T30/T20 curvature
check backs it up."""

MAX_CURVATURE: Final = 0.25
"""T30 is None when it differs from T20 by more than this fraction (ISO 3382-1 Annex B curvature ``T30/T20 - 1``;
ISO flags 10 %, real double-slope rooms reach 20 %)."""

MIN_INR_ENERGY_DB: Final = 25.0
"""Minimum impulse-to-noise ratio in dB for C50, C80, D50 and DRR (at 20 dB they scatter by 1-2 dB, measured)."""

LATE_ABOVE_NOISE_DB: Final = 10.0
"""C50, C80, D50 (and DRR) need the late part of their window measured, not extrapolated: the measured decay
curve must reach at least this far below the level where the late part starts (the curve's level at 50 or
80 ms, at the end of the direct window for DRR). Then the extrapolated tail beyond the noise holds at most
10 % of the late energy, so even a tail wrong by a factor 2 (or missing) moves C by 0.4 dB or less, under half
of one JND (1 dB, ISO 3382-1 Table A.1). Without the rule, a dry room at 20 dB peak-to-noise gave C50 = C80
= 39 dB against 31 and 37 dB, and a synthetic one (T 0.12-0.3 s, DRR +15 dB, band INR 26 dB) C80 5-13 dB low
at 4-8 kHz: the late energy was the extrapolated tail (issue 15). Such a value is null with the reason, not
reported as a bound: the noise-compensated late energy under the noise bounds the true one neither from
above nor from below. (12 dB was tried: it nulled more and changed nothing that 10 dB let through.)"""


METRIC_LABELS: Final = {
    "edt_s": "EDT",
    "t20_s": "T20",
    "t30_s": "T30",
    "rt60_s": "RT60",
    "c50_db": "C50",
    "c80_db": "C80",
    "d50": "D50",
    "drr_db": "DRR",
    "sti": "STI",
}
"""How a null reason names its metric (each reason starts with the metric and the band, or "broadband")."""

DIRECT_WINDOW_S: Final = 0.001
"""The direct sound's window is flat until this long after its peak, then ramps down."""

DIRECT_PRE_S: Final = 0.0005
"""The direct sound's window is flat from this long before its onset."""

DIRECT_RAMP_S: Final = 0.0005
"""Raised-cosine ramps of the direct sound's window, on both sides of its flat part."""

ONSET_THRESHOLD_DB: Final = -20.0
"""ISO 3382-1 Annex A: the impulse response starts where its square first rises above max - 20 dB."""

ONSET_SEARCH_S: Final = 0.020
"""The onset is searched up to 20 ms before the strongest peak (a reflection may be stronger than the
direct sound, but not by more than 20 dB within 20 ms)."""

LEAD_PAD_S: Final = 0.1
"""Zeros put before the response, so the time-reversed filters' pre-ringing of an early direct sound
(up to 34 ms at 125 Hz) is kept."""

TRUNCATION_MIN_S: Final = 0.5
"""At least this much of the response is kept after the broadband noise crossing point."""

MIN_IR_S: Final = 0.05
"""Shortest impulse response accepted, in seconds."""

_FIELDS: Final = ("edt_s", "t20_s", "t30_s", "rt60_s", "c50_db", "c80_db", "d50", "drr_db")


DECAY_CURVE_POINTS: Final = 200
"""Points of a decimated decay curve over its whole length (plus :data:`DECAY_CURVE_EARLY_POINTS` in its
first 100 ms, where EDT is fitted): enough for a plot, a few kB per band."""

DECAY_CURVE_EARLY_POINTS: Final = 40


@dataclass(frozen=True)
class DecayCurve:
    """A decimated copy of one band's normalised Schroeder curve and its regression ranges, for plots.

    ``time_s`` is relative to the direct sound's onset; ``fits`` maps ``edt``, ``t20``, ``t30`` to
    ``{start_s, end_s, intercept_db, slope_db_per_s}`` (the least-squares line and the range it was fitted
    over), for every range the curve had, including those whose value was then refused (see null_reasons).
    """

    time_s: list[float]
    level_db: list[float]
    fits: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, object]:
        return {"time_s": self.time_s, "level_db": self.level_db, "fits": self.fits}


def _decimated_curve(edc_db: np.ndarray, origin: int, sample_rate_hz: float, fits: dict[str, _DecayFit]) -> DecayCurve:
    """Sample ``edc_db`` on a grid that is dense in the first 100 ms and uniform after; floor at -200 dB."""
    n = edc_db.size
    early = min(n - 1, origin + int(0.1 * sample_rate_hz))
    index = np.unique(
        np.concatenate(
            [
                np.linspace(0, n - 1, DECAY_CURVE_POINTS).astype(np.intp),
                np.linspace(max(origin, 0), max(early, 0), DECAY_CURVE_EARLY_POINTS).astype(np.intp),
            ]
        )
    )
    levels = np.maximum(np.nan_to_num(edc_db[index], nan=-200.0, neginf=-200.0), -200.0)
    return DecayCurve(
        time_s=[round(float(t), 5) for t in (index - origin) / sample_rate_hz],
        level_db=[round(float(v), 2) for v in levels],
        fits={
            name.removesuffix("_s"): {
                "start_s": round((fit.start_index - origin) / sample_rate_hz, 5),
                "end_s": round((fit.stop_index - origin) / sample_rate_hz, 5),
                "intercept_db": round(fit.intercept_db + fit.slope_db_per_s * origin / sample_rate_hz, 3),
                "slope_db_per_s": round(fit.slope_db_per_s, 3),
            }
            for name, fit in fits.items()
        },
    )


@dataclass(frozen=True)
class BandParameters:
    """ISO 3382-1 parameters of one octave band (or broadband). None means "not trustworthy"; see null_reasons.

    Attributes
    ----------
    edt_s, t20_s, t30_s, rt60_s : float or None
        Early decay time and reverberation times in seconds.
    c50_db, c80_db : float or None
        Clarity in dB.
    d50 : float or None
        Definition, 0-1.
    drr_db : float or None
        Direct-to-reverberant ratio in dB.
    inr_db : float or None
        Impulse-to-noise ratio in dB (decay start minus noise floor, Lundeby).
    noise_floor_db : float or None
        Noise energy per sample in dB re 1 (IR units squared).
    decay_range_db : float or None
        How far the measured Schroeder curve reaches below its start, in dB.
    null_reasons : dict
        Field name -> why it is None.
    decay_curve : DecayCurve or None
        The decimated Schroeder curve and regression ranges (for plots; not part of :meth:`values`).
    """

    edt_s: float | None = None
    t20_s: float | None = None
    t30_s: float | None = None
    rt60_s: float | None = None
    c50_db: float | None = None
    c80_db: float | None = None
    d50: float | None = None
    drr_db: float | None = None
    inr_db: float | None = None
    noise_floor_db: float | None = None
    decay_range_db: float | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)
    decay_curve: DecayCurve | None = None

    def values(self) -> dict[str, float | None]:
        """The eight parameters as a JSON-safe dict (field -> value or None)."""
        return {name: _finite_or_none(getattr(self, name)) for name in _FIELDS}


class RoomParametersDict(TypedDict):
    """`RoomParameters.as_dict`: values by field name (bands by their nominal frequency as text)."""

    broadband: dict[str, float | None]
    bands: dict[str, dict[str, float | None]]
    null_reasons: dict[str, str]
    quality: dict[str, object]


@dataclass(frozen=True)
class RoomParameters:
    """Parameters of one impulse response: broadband, per octave band, STI, and quality figures.

    Attributes
    ----------
    broadband : BandParameters
        From the response band-limited to 88 Hz-11.3 kHz (lower edge of 125 Hz to upper edge of 8 kHz).
    bands : dict
        Nominal band in Hz -> BandParameters, keys :data:`OCTAVE_BANDS_HZ`.
    sti : float or None
        Male STI (IEC 60268-16 indirect method) under ``sti_assumptions``.
    sti_null_reason : str or None
    direct_index : int
        Index of the direct sound's onset in the input ``ir``.
    sti_assumptions : dict
    """

    broadband: BandParameters
    bands: dict[int, BandParameters]
    sti: float | None
    sti_null_reason: str | None
    direct_index: int
    sti_assumptions: dict[str, object]

    def decay_curves(self) -> dict[str, dict[str, object] | None]:
        """``broadband`` and each band -> its :class:`DecayCurve` as a dict (None where the band had no decay)."""
        everything = [("broadband", self.broadband), *((str(b), self.bands[b]) for b in OCTAVE_BANDS_HZ)]
        return {key: p.decay_curve.as_dict() if p.decay_curve else None for key, p in everything}

    def as_dict(self) -> RoomParametersDict:
        """JSON-safe dict (no NaN or Infinity) in the shape of the measurement results."""
        null_reasons: dict[str, str] = {}
        broadband = self.broadband.values()
        broadband["sti"] = _finite_or_none(self.sti)
        for name, reason in self.broadband.null_reasons.items():
            null_reasons[f"broadband.{name}"] = reason
        if broadband["sti"] is None:
            null_reasons["broadband.sti"] = named_reason("sti", None, self.sti_null_reason or "could not be computed")
        bands: dict[str, dict[str, float | None]] = {}
        for band in OCTAVE_BANDS_HZ:
            parameters = self.bands[band]
            bands[str(band)] = parameters.values()
            for name, reason in parameters.null_reasons.items():
                null_reasons[f"bands.{band}.{name}"] = reason
        for prefix, values in [("broadband", broadband), *((f"bands.{b}", bands[str(b)]) for b in OCTAVE_BANDS_HZ)]:
            for name, value in values.items():
                if value is None:
                    band_hz = None if prefix == "broadband" else int(prefix.split(".")[1])
                    null_reasons.setdefault(f"{prefix}.{name}", named_reason(name, band_hz, "not computed"))
        everything = [("broadband", self.broadband), *((str(b), self.bands[b]) for b in OCTAVE_BANDS_HZ)]
        return {
            "broadband": broadband,
            "bands": bands,
            "null_reasons": null_reasons,
            "quality": {
                "inr_db": {key: _rounded(p.inr_db) for key, p in everything},
                "noise_floor_db": {key: _rounded(p.noise_floor_db) for key, p in everything},
                "decay_range_db": {key: _rounded(p.decay_range_db) for key, p in everything},
                "direct_index": int(self.direct_index),
                "sti_assumptions": self.sti_assumptions,
            },
        }


@dataclass(frozen=True)
class DirectSound:
    """Where the direct sound is: ``onset_index`` (ISO 3382-1 start, -20 dB) and ``peak_index`` (its maximum)."""

    onset_index: int
    peak_index: int


def find_direct_sound(ir: np.ndarray, sample_rate_hz: float, *, hint_index: int | None = None) -> DirectSound:
    """Locate the direct sound of an impulse response.

    Parameters
    ----------
    ir : numpy.ndarray
        1-D impulse response (finite, not all zero).
    sample_rate_hz : float
        Sample rate in Hz (8 kHz-384 kHz).
    hint_index : int, optional
        Approximate index of the direct sound; the peak is then searched within +-1 ms of it.

    Returns
    -------
    DirectSound

    Notes
    -----
    The peak is the maximum of ``|ir|`` (near the hint if given). The onset is the first sample within
    :data:`ONSET_SEARCH_S` before the peak whose square is above ``max - 20 dB`` (ISO 3382-1 Annex A);
    the direct sound's peak is then the largest sample within 1 ms after the onset, so a first arrival
    weaker than a later reflection is still taken as the direct sound.
    """
    ir = _bands.check_ir(ir)
    _bands.check_sample_rate(sample_rate_hz)
    if hint_index is not None and not 0 <= hint_index < ir.size:
        raise ValueError(f"direct_index must be between 0 and {ir.size - 1}, got {hint_index}")
    if not np.any(ir):
        raise ValueError("ir is all zeros")
    return _find_direct(ir, float(sample_rate_hz), hint_index)


def room_parameters(
    ir: np.ndarray,
    sample_rate_hz: float,
    *,
    direct_index: int | None = None,
    band_limits_hz: tuple[float, float] | None = None,
) -> RoomParameters:
    """All ISO 3382-1 parameters per octave band and broadband, and the STI, of one impulse response.

    Parameters
    ----------
    ir : numpy.ndarray
        1-D impulse response, at least 50 ms, finite, not all zero; may start with silence or noise
        before the direct sound. Any scale (levels are reported relative to it).
    sample_rate_hz : float
        Sample rate in Hz, 8 kHz-384 kHz. Bands whose upper edge is above 95 % of Nyquist are None with
        a reason (the 8 kHz band needs at least 23.8 kHz).
    direct_index : int, optional
        Hint for the direct sound's index (for example from alignment); searched within +-1 ms.
    band_limits_hz : (float, float), optional
        The sweep range ``(f_start_hz, f_end_hz)`` when ``ir`` was measured by deconvolving a sweep and
        band-limited with :func:`sonalyze_acoustics.deconvolution.band_mask`: the direct sound is then that
        mask's zero-phase pulse, whose low-frequency wings outlast the direct window, and each band's DRR
        is corrected for it (see :func:`_direct_window_gains`). None (simulated responses): no correction.

    Returns
    -------
    RoomParameters

    Raises
    ------
    ValueError
        When an argument is invalid; the message names it.
    """
    ir = _bands.check_ir(ir)
    _bands.check_sample_rate(sample_rate_hz)
    if ir.size < MIN_IR_S * sample_rate_hz:
        raise ValueError(f"ir must be at least {MIN_IR_S} s long, got {ir.size / sample_rate_hz:.3f} s")
    if direct_index is not None and not 0 <= direct_index < ir.size:
        raise ValueError(f"direct_index must be between 0 and {ir.size - 1}, got {direct_index}")
    if not np.any(ir):
        raise ValueError("ir is all zeros")
    if band_limits_hz is not None:
        low_hz, high_hz = (float(value) for value in band_limits_hz)
        if not (math.isfinite(low_hz) and math.isfinite(high_hz) and 0 < low_hz < high_hz <= sample_rate_hz / 2):
            raise ValueError(f"band_limits_hz must satisfy 0 < low < high <= Nyquist, got {band_limits_hz}")
        band_limits_hz = (low_hz, high_hz)
    return _room_parameters(ir, float(sample_rate_hz), direct_index, band_limits_hz)


# ---------------------------------------------------------------------------------------------------------
# private helpers


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def named_reason(name: str, band_hz: int | None, reason: str) -> str:
    """``reason`` prefixed with the metric and band it is about: ``"C50 at 2000 Hz: ..."``, ``"T30 broadband: ..."``."""
    where = "broadband" if band_hz is None else f"at {band_hz} Hz"
    prefix = f"{METRIC_LABELS.get(name, name)} {where}: "
    return reason if reason.startswith(prefix) else prefix + reason


def _rounded(value: float | None) -> float | None:
    value = _finite_or_none(value)
    return None if value is None else round(value, 2)


def _find_direct(ir: np.ndarray, sample_rate_hz: float, hint_index: int | None) -> DirectSound:
    magnitude = np.abs(ir)
    if hint_index is None:
        peak = int(np.argmax(magnitude))
    else:
        radius = max(int(0.001 * sample_rate_hz), 1)
        low = max(hint_index - radius, 0)
        peak = low + int(np.argmax(magnitude[low : hint_index + radius + 1]))
    threshold = magnitude[peak] * 10.0 ** (ONSET_THRESHOLD_DB / 20.0)
    search_low = max(peak - int(ONSET_SEARCH_S * sample_rate_hz), 0)
    onset = search_low + int(np.flatnonzero(magnitude[search_low : peak + 1] >= threshold)[0])
    window = max(int(0.001 * sample_rate_hz), 1)
    direct_peak = onset + int(np.argmax(magnitude[onset : min(onset + window, peak) + 1]))
    return DirectSound(onset_index=onset, peak_index=direct_peak)


@dataclass(frozen=True)
class _DecayFit:
    decay_time_s: float
    nonlinearity_permille: float
    start_index: int = 0
    stop_index: int = 0
    intercept_db: float = 0.0
    """Level of the fitted line at index 0 of the curve."""
    slope_db_per_s: float = 0.0


def _decay_time_s(
    edc_db: np.ndarray, first: int, top_db: float, bottom_db: float, sample_rate_hz: float
) -> _DecayFit | None:
    """ISO 3382-1 regression of the normalised curve between ``top_db`` and ``bottom_db`` from index ``first``.

    Returns the decay time ``-60 / slope`` and the non-linearity ``xi = 1000 (1 - r**2)`` (ISO 3382-1 Annex B).
    """
    curve = edc_db[first:]
    below_top = np.flatnonzero(curve <= top_db)
    below_bottom = np.flatnonzero(curve <= bottom_db)
    if below_top.size == 0 or below_bottom.size == 0:
        return None
    start = int(below_top[0]) if top_db < 0 else 0
    stop = int(below_bottom[0])
    if stop - start < 3:
        return None
    stride = max((stop - start) // 4000, 1)
    index = np.arange(start, stop + 1, stride).astype(np.float64)
    levels = curve[index.astype(np.intp)]
    intercept_db, slope_db_per_sample = _decay.fit_line(index, levels)
    if slope_db_per_sample >= 0:
        return None
    correlation = np.corrcoef(index, levels)[0, 1]
    return _DecayFit(
        decay_time_s=float(-60.0 / (slope_db_per_sample * sample_rate_hz)),
        nonlinearity_permille=float(1000.0 * (1.0 - correlation**2)),
        start_index=first + start,
        stop_index=first + stop,
        intercept_db=float(intercept_db - slope_db_per_sample * first),
        slope_db_per_s=float(slope_db_per_sample * sample_rate_hz),
    )


def _decay_times(
    edc_db: np.ndarray,
    direct_offset: int,
    decay_range_db: float,
    inr_db: float,
    sample_rate_hz: float,
    margin_db: float = DECAY_MARGIN_DB,
    min_edt_span_s: float = EDT_MIN_SPAN_S,
    fits: dict[str, _DecayFit] | None = None,
    t20_margin_db: float | None = None,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """EDT, T20, T30 and rt60 with the reasons for each null; every regression made lands in ``fits``.

    ``margin_db``: how far the measured curve must reach below T30's range (and T20's, unless
    ``t20_margin_db`` is given)."""
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name, top_db, bottom_db, label in (
        ("edt_s", 0.0, -10.0, "EDT"),
        ("t20_s", -5.0, -25.0, "T20"),
        ("t30_s", -5.0, -35.0, "T30"),
    ):
        margin = t20_margin_db if name == "t20_s" and t20_margin_db is not None else margin_db
        needed_db = EDT_MIN_DECAY_RANGE_DB if name == "edt_s" else -bottom_db + margin
        if decay_range_db < needed_db:
            values[name] = None
            reasons[name] = f"decay range {decay_range_db:.0f} dB is below the {needed_db:.0f} dB {label} needs"
            continue
        if name == "edt_s" and inr_db < MIN_INR_ENERGY_DB:
            values[name] = None
            reasons[name] = f"impulse-to-noise ratio {inr_db:.0f} dB is below the {MIN_INR_ENERGY_DB:.0f} dB EDT needs"
            continue
        if name == "edt_s":
            below = np.flatnonzero(edc_db[direct_offset:] <= -10.0)
            span_s = below[0] / sample_rate_hz if below.size else 0.0
            if span_s < min_edt_span_s:
                values[name] = None
                reasons[name] = (
                    f"the curve falls 10 dB within {1000 * span_s:.0f} ms of the direct sound (a strong direct "
                    f"sound), shorter than the {1000 * min_edt_span_s:.0f} ms this band resolves"
                )
                continue
        fit = _decay_time_s(edc_db, direct_offset, top_db, bottom_db, sample_rate_hz)
        values[name] = None if fit is None else fit.decay_time_s
        if fit is not None and fits is not None:
            fits[name] = fit
        if fit is None:
            reasons[name] = f"the decay curve has no usable {label} evaluation range"
        elif name != "edt_s" and fit.nonlinearity_permille > MAX_NONLINEARITY_PERMILLE:
            values[name] = None
            reasons[name] = (
                f"the decay is not straight over the {label} range (non-linearity {fit.nonlinearity_permille:.0f} "
                f"per mille, above {MAX_NONLINEARITY_PERMILLE:.0f})"
            )
    t20_s, t30_s = values["t20_s"], values["t30_s"]
    if t20_s is not None and t30_s is not None and abs(t30_s / t20_s - 1.0) > MAX_CURVATURE:
        values["t30_s"] = None
        reasons["t30_s"] = (
            f"T30 and T20 disagree by {100 * abs(t30_s / t20_s - 1):.0f} % (curvature above "
            f"{100 * MAX_CURVATURE:.0f} %): the lower part of the decay is not trustworthy"
        )
    if values["t30_s"] is not None:
        values["rt60_s"] = values["t30_s"]
    elif values["t20_s"] is not None:
        values["rt60_s"] = values["t20_s"]
    else:
        values["rt60_s"] = None
        reasons["rt60_s"] = "neither T30 nor T20 is usable: " + reasons.get("t20_s", "")
    return values, reasons


def _energies(
    edc: np.ndarray, origin: int, band_delay: int, n_ms: int, direct_energy: float, cross_energy: float
) -> dict[str, float | None]:
    """C50, C80, D50 and DRR from the compensated Schroeder curve ``edc`` (index 0 = start of integration).

    ``origin`` is the direct sound's onset as an index into ``edc``, ``band_delay`` the filter's energy advance
    in samples (the 50 and 80 ms boundaries move that much earlier), ``n_ms`` samples per millisecond.
    ``direct_energy`` is the band energy of the windowed direct sound ``d_b`` and ``cross_energy`` the
    interference ``2 sum y_b d_b - 2 sum d_b**2`` between it and the rest of the band signal ``y_b``
    (:class:`_DirectSound`), so ``E_reverberant = E_total - E_direct - cross`` is the band energy of the
    response with the direct window removed, and ``DRR = 10 log10(E_direct / E_reverberant)``.
    """
    n = edc.size
    total = float(edc[0])

    def at(index: int) -> float:
        return float(edc[min(max(index, 0), n - 1)])

    late_50 = at(origin + 50 * n_ms - band_delay)
    late_80 = at(origin + 80 * n_ms - band_delay)
    reverberant = total - direct_energy - cross_energy
    return {
        "c50_db": 10.0 * math.log10((total - late_50) / late_50) if 0 < late_50 < total else None,
        "c80_db": 10.0 * math.log10((total - late_80) / late_80) if 0 < late_80 < total else None,
        "d50": (total - late_50) / total if total > 0 else None,
        "drr_db": 10.0 * math.log10(direct_energy / reverberant) if direct_energy > 0 and reverberant > 0 else None,
    }


def _late_part_measured_db(
    edc: np.ndarray,
    origin: int,
    band_delay: int,
    n_ms: int,
    decay_range_db: float,
    direct_share: float,
    direct_samples: int,
) -> dict[str, float]:
    """Per energy ratio: how far (dB) the measured decay curve reaches below the start of its late part.

    The measured curve ends ``decay_range_db`` below ``edc[0]``; the late part of C50/D50 starts at the curve's
    level at 50 ms, C80's at 80 ms, and DRR's reverberant part where the direct window ends (``edc[0]`` minus
    the direct energy ``direct_share``). See :data:`LATE_ABOVE_NOISE_DB`.
    """
    n = edc.size
    total = float(edc[0])
    if total <= 0:
        return dict.fromkeys(("c50_db", "c80_db", "d50", "drr_db"), -math.inf)

    def level_db(energy: float) -> float:
        return 10.0 * math.log10(energy / total) if energy > 0 else -math.inf

    late_50 = level_db(float(edc[min(max(origin + 50 * n_ms - band_delay, 0), n - 1)]))
    late_80 = level_db(float(edc[min(max(origin + 80 * n_ms - band_delay, 0), n - 1)]))
    reverberant = level_db(total - direct_share) if direct_samples else 0.0
    return {
        "c50_db": decay_range_db + late_50,
        "c80_db": decay_range_db + late_80,
        "d50": decay_range_db + late_50,
        "drr_db": decay_range_db + reverberant,
    }


@dataclass(frozen=True)
class _DirectSound:
    """The direct window of ``ir`` through every band filter: ``signals[row]`` covers absolute indices
    ``[start, start + signals.shape[1])`` of the (lead-padded) band signals."""

    signals: np.ndarray
    start: int
    n_before: int
    n_after: int
    n_ramp: int


def _direct_window(n_before: int, n_after: int, n_ramp: int) -> np.ndarray:
    """Flat top with raised-cosine ramps: ``n_ramp`` up, ``n_before + n_after + 1`` at 1, ``n_ramp`` down."""
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_ramp) + 0.5) / n_ramp)
    return np.concatenate([ramp, np.ones(n_before + n_after + 1), ramp[::-1]])


def _direct_band_signals(
    padded: np.ndarray, sample_rate_hz: float, onset: int, peak: int, bands: tuple[int, ...]
) -> _DirectSound:
    """Band-filter the direct sound alone.

    The direct sound is ``padded`` times a window that is 1 from :data:`DIRECT_PRE_S` before the onset to
    :data:`DIRECT_WINDOW_S` after the peak, with :data:`DIRECT_RAMP_S` raised-cosine ramps on both sides: a
    hard cut would turn the step in the reverberation at the window's end into spurious low-frequency
    energy. With time-reversed filters the direct sound's band energy lies before the window's end, within
    the 125 Hz filter's extent; a zero lead of :data:`LEAD_PAD_S` keeps all of it.
    """
    n_before = onset - max(onset - int(round(DIRECT_PRE_S * sample_rate_hz)), 0)
    n_after = int(round(DIRECT_WINDOW_S * sample_rate_hz)) + (peak - onset)
    n_ramp = max(int(round(DIRECT_RAMP_S * sample_rate_hz)), 1)
    window = _direct_window(n_before, n_after, n_ramp)
    low = onset - n_before - n_ramp
    high = low + window.size
    clipped_low, clipped_high = max(low, 0), min(high, padded.size)
    segment = padded[clipped_low:clipped_high] * window[clipped_low - low : window.size - (high - clipped_high)]
    lead = int(LEAD_PAD_S * sample_rate_hz)
    buffer = np.concatenate([np.zeros(lead), segment])
    signals = _bands._filter_bands(buffer, sample_rate_hz, bands, True)
    return _DirectSound(
        signals=signals, start=clipped_high - buffer.size, n_before=n_before, n_after=n_after, n_ramp=n_ramp
    )


def _direct_window_gains(
    sample_rate_hz: float, band_limits_hz: tuple[float, float], window: tuple[int, int, int], bands: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per band (then broadband) ``(g_b, q_b)``: the band energy of the measurement's band-limited pulse
    ``m``, and of its part outside the direct window, each over the band energy of its part inside:
    ``g_b = E_b[m] / E_b[m w]``, ``q_b = E_b[m (1 - w)] / E_b[m w]``.

    Why: a swept-sine measurement returns ``h * m``, ``m`` the zero-phase pulse of the deconvolution's band
    mask (:func:`sonalyze_acoustics.deconvolution.band_mask`). Its spectral hole below the sweep's start
    (below 50-71 Hz by default) gives ``m`` slow wings of opposite sign, tens of ms long. A window of a few
    ms cannot resolve that hole (its resolution is ``1 / T``, several hundred Hz): the windowed pulse's
    spectrum is the mask smeared by the window's, which fills the hole and takes energy out of the 125 and
    250 Hz bands (1.5 and 0.6 dB for a 2 ms window; nothing above 500 Hz), while the wings outside the
    window would count as reverberant. A longer window would take in the first reflections instead. The
    direct sound of a source that is flat over the window's resolution is ``a m`` with ``a**2 E_b[m w]`` the
    measured windowed band energy ``D_w``, so its band energy is ``g_b D_w`` and the wings' ``q_b D_w`` is
    taken off the rest (``g_b != 1 + q_b``: inside a band the core and the wings overlap and interfere).
    Cached per window shape.
    """
    gains, wings = _direct_window_gains_cached(float(sample_rate_hz), band_limits_hz, window, bands)
    return gains.copy(), wings.copy()


@lru_cache(maxsize=32)
def _direct_window_gains_cached(
    sample_rate_hz: float, band_limits_hz: tuple[float, float], window: tuple[int, int, int], bands: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    from sonalyze_acoustics.deconvolution import band_mask

    n_before, n_after, n_ramp = window
    n_samples = 1 << int(np.ceil(np.log2(sample_rate_hz)))  # about 1 s: the wings fade well within it
    centre = n_samples // 2
    freqs_hz = np.fft.rfftfreq(n_samples, 1.0 / sample_rate_hz)
    mask = band_mask(freqs_hz, *band_limits_hz)
    pulse = np.fft.irfft(mask * np.exp(-2j * np.pi * np.arange(freqs_hz.size) * centre / n_samples), n_samples)
    magnitude = np.abs(pulse)
    onset = int(np.flatnonzero(magnitude >= magnitude[centre] * 10.0 ** (ONSET_THRESHOLD_DB / 20.0))[0])
    shape = _direct_window(n_before, n_after, n_ramp)
    low = onset - n_before - n_ramp
    weights = np.zeros(n_samples)
    weights[low : low + shape.size] = shape
    full = _bands.band_energies(pulse, sample_rate_hz, bands_hz=bands)
    inside = _bands.band_energies(pulse * weights, sample_rate_hz, bands_hz=bands)
    outside = _bands.band_energies(pulse * (1.0 - weights), sample_rate_hz, bands_hz=bands)
    inside = np.maximum(inside, 1e-300)
    return full / inside, outside / inside


@dataclass(frozen=True)
class _BandResult:
    parameters: BandParameters
    mtf: np.ndarray | None


def _band(
    band_signal: np.ndarray,
    band_hz: int | None,
    sample_rate_hz: float,
    onset: int,
    direct_signal: np.ndarray,
    direct_start: int,
    direct_gain: float = 1.0,
    wing_fraction: float = 0.0,
) -> _BandResult:
    extent = int(math.ceil(_bands.band_energy_extent_s(band_hz, sample_rate_hz) * sample_rate_hz))
    # The time-reversed filter needs `extent` samples of future input: the last ones fade out artificially.
    energy = band_signal[: max(band_signal.size - extent, onset + 64)] ** 2
    delay = int(round(_bands.band_energy_delay_s(band_hz, sample_rate_hz) * sample_rate_hz))
    start = max(onset - extent - 1, 0)
    try:
        analysis = _decay.analyse_decay(energy, sample_rate_hz, start_index=start, reference_index=onset)
    except _decay.NoDecayError as error:
        reason = f"no usable decay: {error}"
        return _BandResult(
            BandParameters(null_reasons={name: named_reason(name, band_hz, reason) for name in _FIELDS}), None
        )

    edc = analysis.edc
    origin = onset - start
    total = edc[0]
    with np.errstate(divide="ignore"):
        edc_db = 10.0 * np.log10(edc / total)
    fits: dict[str, _DecayFit] = {}
    values, reasons = _decay_times(
        edc_db,
        origin,
        analysis.decay_range_db,
        analysis.inr_db,
        sample_rate_hz,
        LOW_BAND_DECAY_MARGIN_DB.get(band_hz, DECAY_MARGIN_DB) if band_hz is not None else DECAY_MARGIN_DB,
        max(EDT_MIN_SPAN_S, EDT_SPAN_PER_DELAY * delay / sample_rate_hz),
        fits,
        t20_margin_db=(
            LOW_BAND_DECAY_MARGIN_DB.get(band_hz, T20_DECAY_MARGIN_DB) if band_hz is not None else T20_DECAY_MARGIN_DB
        ),
    )

    n_ms = max(int(round(sample_rate_hz / 1000.0)), 1)
    low = max(direct_start, 0)
    direct_part = direct_signal[low - direct_start :]
    overlap = band_signal[low : low + direct_part.size]
    windowed_energy = float(np.dot(direct_part, direct_part))
    cross_energy = 2.0 * float(np.dot(overlap, direct_part)) - 2.0 * windowed_energy
    # the band-limited pulse's wings beyond the window (see _direct_window_gains): direct, not reverberant
    direct_energy = direct_gain * windowed_energy
    cross_energy += (1.0 + wing_fraction - direct_gain) * windowed_energy
    if analysis.inr_db < MIN_INR_ENERGY_DB:
        for name in ("c50_db", "c80_db", "d50", "drr_db"):
            values[name] = None
            reasons[name] = (
                f"impulse-to-noise ratio {analysis.inr_db:.0f} dB is below the {MIN_INR_ENERGY_DB:.0f} dB "
                "energy ratios need"
            )
    else:
        measured_below_db = _late_part_measured_db(
            edc, origin, delay, n_ms, analysis.decay_range_db, direct_energy + cross_energy, direct_signal.size
        )
        for name, value in _energies(edc, origin, delay, n_ms, direct_energy, cross_energy).items():
            values[name] = value
            if value is None:
                reasons[name] = "energy ratio undefined (no energy on one side of the boundary)"
            elif measured_below_db[name] < LATE_ABOVE_NOISE_DB:
                values[name] = None
                reasons[name] = (
                    f"the late part of the window is not above the noise: the measured decay reaches only "
                    f"{measured_below_db[name]:.1f} dB below its start (at least {LATE_ABOVE_NOISE_DB:.0f} dB needed; "
                    "the late energy would be mostly the extrapolated tail)"
                )

    parameters = BandParameters(
        **{name: _finite_or_none(values[name]) for name in _FIELDS},
        inr_db=_finite_or_none(analysis.inr_db),
        noise_floor_db=_finite_or_none(analysis.noise_floor_db),
        decay_range_db=_finite_or_none(analysis.decay_range_db),
        null_reasons={name: named_reason(name, band_hz, text) for name, text in reasons.items()},
        decay_curve=_decimated_curve(edc_db, origin, sample_rate_hz, fits),
    )
    lundeby = analysis.lundeby
    stop = start + edc.size
    compensated = energy[start:stop] - lundeby.noise_power
    decay_per_s = -lundeby.late_slope_db_per_s * math.log(10.0) / 10.0
    tail = analysis.tail_energy
    mtf = _sti.band_mtfs(compensated[None, :], sample_rate_hz, np.array([tail]), np.array([decay_per_s]))[0]
    return _BandResult(parameters, mtf)


def _useful_length(ir: np.ndarray, sample_rate_hz: float, onset: int) -> int:
    """Samples worth analysing: a coarse Lundeby on the unfiltered response finds where its decay meets the
    noise at ``t_c``; everything after ``t_c + max(t_c - t_onset, 0.5 s)`` is noise, which only costs time (a
    band whose decay outlasts the broadband one by up to twice still fits, and the noise estimate keeps at
    least a third of the kept decay)."""
    try:
        coarse = _decay.lundeby_truncation(ir * ir, sample_rate_hz, start_index=onset)
    except (_decay.NoDecayError, ValueError):  # ValueError: the onset within the last 16 samples
        return ir.size
    if coarse.noise_free:
        return ir.size
    keep = coarse.crossing_index + max(coarse.crossing_index - onset, int(TRUNCATION_MIN_S * sample_rate_hz))
    return int(min(max(keep, onset + int(MIN_IR_S * sample_rate_hz)), ir.size))


def _room_parameters(
    ir: np.ndarray, sample_rate_hz: float, direct_index: int | None, band_limits_hz: tuple[float, float] | None
) -> RoomParameters:
    direct = _find_direct(ir, sample_rate_hz, direct_index)
    ir = ir[: _useful_length(ir, sample_rate_hz, direct.onset_index)]
    lead = int(LEAD_PAD_S * sample_rate_hz)
    padded = np.concatenate([np.zeros(lead), ir])
    available = _bands.available_bands_hz(sample_rate_hz)
    signals = _bands.filter_octave_bands(padded, sample_rate_hz, bands_hz=available)
    onset = direct.onset_index + lead
    direct_bands = _direct_band_signals(padded, sample_rate_hz, onset, direct.peak_index + lead, available)

    gains, wings = np.ones(len(available) + 1), np.zeros(len(available) + 1)
    if band_limits_hz is not None:
        window = (direct_bands.n_before, direct_bands.n_after, direct_bands.n_ramp)
        gains, wings = _direct_window_gains(sample_rate_hz, band_limits_hz, window, available)

    results: dict[int, _BandResult] = {}
    for row, band in enumerate(available):
        direct_signal = direct_bands.signals[row]
        results[band] = _band(
            signals[row], band, sample_rate_hz, onset, direct_signal, direct_bands.start, gains[row], wings[row]
        )
    direct_signal = direct_bands.signals[-1]
    broadband = _band(signals[-1], None, sample_rate_hz, onset, direct_signal, direct_bands.start, gains[-1], wings[-1])

    band_parameters: dict[int, BandParameters] = {}
    for band in OCTAVE_BANDS_HZ:
        if band in results:
            band_parameters[band] = results[band].parameters
        else:
            reason = f"the {band} Hz band lies above the usable range of sample rate {sample_rate_hz:g} Hz"
            band_parameters[band] = BandParameters(
                null_reasons={name: named_reason(name, band, reason) for name in _FIELDS}
            )

    assumptions = _sti.StiAssumptions(speech_level_dba=_sti.DEFAULT_SPEECH_LEVEL_DBA, noise_levels_db=None)
    sti_value: float | None = None
    sti_reason: str | None = None
    mtfs = {band: results[band].mtf for band in OCTAVE_BANDS_HZ if band in results}
    present = [mtf for mtf in mtfs.values() if mtf is not None]
    if len(present) < len(OCTAVE_BANDS_HZ):
        missing = [band for band in OCTAVE_BANDS_HZ if mtfs.get(band) is None]
        sti_reason = "STI needs all seven octave bands; missing: " + ", ".join(f"{band} Hz" for band in missing)
    else:
        mtf = np.stack(present)
        sti_value = _sti.speech_transmission_index(mtf).sti

    return RoomParameters(
        broadband=broadband.parameters,
        bands=band_parameters,
        sti=sti_value,
        sti_null_reason=sti_reason,
        direct_index=int(direct.onset_index),
        sti_assumptions=assumptions.as_dict(),
    )
