"""The measurement signal: silence, sync chirp, exponential sweep, decay gap, sync chirp, silence.

Layout (defaults in brackets)::

    | lead silence | chirp 1 | gap | exponential sweep | decay window | chirp 2 | tail |
    |   [0.5 s]    | [0.2 s] |[0.5]|      [5 s]        |    [3 s]     | [0.2 s] |[0.6]|

The two identical linear chirps bracket the sweep: their spacing, measured in a recording, gives
the clock drift between speaker and microphone, and the first one gives the offset. The decay
window after the sweep is kept silent so that the room's reverberation of the sweep is recorded
before the second chirp starts; the impulse response is therefore valid up to ``decay_s`` after
its direct sound. Everything is deterministic: the same parameters give bit-identical samples.

References
----------
Farina, A. (2000). Simultaneous measurement of impulse response and distortion with a swept-sine
technique. 108th AES Convention, preprint 5093.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

SIGNAL_VERSION: Final = 1
"""Bumped whenever the generated samples change, so signal ids change with them."""

LEAD_SILENCE_S: Final = 0.5
CHIRP_DURATION_S: Final = 0.2
CHIRP_F_START_HZ: Final = 1000.0
CHIRP_F_END_HZ: Final = 8000.0
PRE_SWEEP_GAP_S: Final = 0.5
DECAY_S: Final = 3.0
TAIL_SILENCE_S: Final = 0.6
SWEEP_FADE_IN_S: Final = 0.05
SWEEP_FADE_OUT_S: Final = 0.01
CHIRP_TAPER_FRACTION: Final = 0.2
AMPLITUDE: Final = 0.707
"""Peak amplitude of sweep and chirps (-3 dBFS): loud, with headroom for the phone's DAC."""

DEFAULT_SWEEP_DURATION_S: Final = 5.0
DEFAULT_F_START_HZ: Final = 50.0
DEFAULT_F_END_HZ: Final = 20000.0
MIN_SAMPLE_RATE_HZ: Final = 8000
MAX_SAMPLE_RATE_HZ: Final = 192000
MIN_SWEEP_DURATION_S: Final = 1.0
MAX_SWEEP_DURATION_S: Final = 30.0
MIN_F_START_HZ: Final = 20.0
MAX_F_START_HZ: Final = 1000.0
MAX_F_END_FRACTION: Final = 0.475
"""The sweep ends at most at this fraction of the sample rate (just below Nyquist)."""
CHIRP_MAX_FRACTION: Final = 0.45


@dataclass(frozen=True, slots=True)
class SignalTiming:
    """Where each part of the signal sits. Sample indices are exact; the ``_s`` values are derived."""

    sample_rate_hz: int
    n_samples: int
    chirp1_start_samples: int
    chirp2_start_samples: int
    chirp_n_samples: int
    sweep_start_samples: int
    sweep_n_samples: int
    decay_n_samples: int
    f_start_hz: float
    f_end_hz: float
    chirp_f_start_hz: float
    chirp_f_end_hz: float
    sweep_fade_in_s: float
    sweep_fade_out_s: float
    amplitude: float

    def _s(self, n_samples: int) -> float:
        return n_samples / self.sample_rate_hz

    @property
    def total_duration_s(self) -> float:
        return self._s(self.n_samples)

    @property
    def chirp1_start_s(self) -> float:
        return self._s(self.chirp1_start_samples)

    @property
    def chirp2_start_s(self) -> float:
        return self._s(self.chirp2_start_samples)

    @property
    def chirp_duration_s(self) -> float:
        return self._s(self.chirp_n_samples)

    @property
    def chirp_spacing_s(self) -> float:
        """From the start of chirp 1 to the start of chirp 2: the ruler for the clock drift."""
        return self._s(self.chirp2_start_samples - self.chirp1_start_samples)

    @property
    def sweep_start_s(self) -> float:
        return self._s(self.sweep_start_samples)

    @property
    def sweep_duration_s(self) -> float:
        return self._s(self.sweep_n_samples)

    @property
    def sweep_end_samples(self) -> int:
        return self.sweep_start_samples + self.sweep_n_samples

    @property
    def sweep_end_s(self) -> float:
        return self._s(self.sweep_end_samples)

    @property
    def decay_s(self) -> float:
        """Silence between the end of the sweep and chirp 2: the longest usable impulse response."""
        return self._s(self.decay_n_samples)

    @property
    def lead_silence_s(self) -> float:
        return self.chirp1_start_s

    @property
    def tail_silence_s(self) -> float:
        return self._s(self.n_samples - self.chirp2_start_samples - self.chirp_n_samples)

    def as_dict(self) -> dict[str, Any]:
        """Every field and derived time, JSON-safe."""
        out = asdict(self)
        for name in (
            "total_duration_s",
            "lead_silence_s",
            "chirp1_start_s",
            "chirp_duration_s",
            "sweep_start_s",
            "sweep_duration_s",
            "sweep_end_s",
            "decay_s",
            "chirp2_start_s",
            "chirp_spacing_s",
            "tail_silence_s",
        ):
            out[name] = round(getattr(self, name), 9)
        out["sweep_end_samples"] = self.sweep_end_samples
        return out


@dataclass(frozen=True, slots=True)
class MeasurementSignal:
    """The samples (float64, mono, peak ``AMPLITUDE``) and where their parts are."""

    samples: np.ndarray
    timing: SignalTiming


def default_f_end_hz(sample_rate_hz: float) -> float:
    """20 kHz, or just below Nyquist for low sample rates."""
    return min(DEFAULT_F_END_HZ, MAX_F_END_FRACTION * sample_rate_hz)


def check_signal_parameters(sample_rate_hz: int, sweep_duration_s: float, f_start_hz: float, f_end_hz: float) -> None:
    """Raise ``ValueError`` naming the first parameter out of its bounds."""
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise ValueError(
            f"sample_rate_hz must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ}, got {sample_rate_hz}"
        )
    if not MIN_SWEEP_DURATION_S <= sweep_duration_s <= MAX_SWEEP_DURATION_S:
        raise ValueError(
            f"duration_s must be between {MIN_SWEEP_DURATION_S} and {MAX_SWEEP_DURATION_S}, got {sweep_duration_s}"
        )
    if not MIN_F_START_HZ <= f_start_hz <= MAX_F_START_HZ:
        raise ValueError(f"f_start_hz must be between {MIN_F_START_HZ} and {MAX_F_START_HZ}, got {f_start_hz}")
    f_end_max_hz = MAX_F_END_FRACTION * sample_rate_hz
    if not 4 * f_start_hz <= f_end_hz <= f_end_max_hz:
        raise ValueError(
            f"f_end_hz must be between 4 * f_start_hz ({4 * f_start_hz:g}) and "
            f"{MAX_F_END_FRACTION} * sample_rate ({f_end_max_hz:g}), got {f_end_hz}"
        )


def exponential_sweep(sample_rate_hz: float, duration_s: float, f_start_hz: float, f_end_hz: float) -> np.ndarray:
    """Farina's exponential sine sweep, unit amplitude, no fades.

    ``x(t) = sin(2 pi f1 L (exp(t / L) - 1))`` with ``L = T / ln(f2 / f1)``: the instantaneous
    frequency rises from ``f_start_hz`` to ``f_end_hz`` exponentially, equal time per octave.

    Returns
    -------
    ndarray, shape (round(duration_s * sample_rate_hz),)
    """
    n_samples = int(round(duration_s * sample_rate_hz))
    t_s = np.arange(n_samples) / sample_rate_hz
    rate_s = duration_s / np.log(f_end_hz / f_start_hz)
    return np.sin(2 * np.pi * f_start_hz * rate_s * np.expm1(t_s / rate_s))


def linear_chirp(sample_rate_hz: float, duration_s: float, f_start_hz: float, f_end_hz: float) -> np.ndarray:
    """A linear chirp with Tukey-tapered ends (unit peak): sharp autocorrelation, no clicks."""
    n_samples = int(round(duration_s * sample_rate_hz))
    t_s = np.arange(n_samples) / sample_rate_hz
    rate_hz_s = (f_end_hz - f_start_hz) / duration_s
    chirp = np.sin(2 * np.pi * (f_start_hz * t_s + 0.5 * rate_hz_s * t_s**2))
    return chirp * _tukey(n_samples, CHIRP_TAPER_FRACTION)


def sync_chirp(sample_rate_hz: float) -> np.ndarray:
    """The sync chirp of the measurement signal at ``sample_rate_hz`` (unit peak)."""
    f_start_hz, f_end_hz = _chirp_band_hz(sample_rate_hz)
    return linear_chirp(sample_rate_hz, CHIRP_DURATION_S, f_start_hz, f_end_hz)


def measurement_signal(
    sample_rate_hz: int,
    *,
    sweep_duration_s: float = DEFAULT_SWEEP_DURATION_S,
    f_start_hz: float = DEFAULT_F_START_HZ,
    f_end_hz: float | None = None,
) -> MeasurementSignal:
    """Build the full measurement signal.

    Parameters
    ----------
    sample_rate_hz : int
        8000 to 192000.
    sweep_duration_s : float
        Length of the exponential sweep, 1 to 30 s.
    f_start_hz, f_end_hz : float
        Sweep range; ``f_start_hz`` 20 to 1000 Hz, ``f_end_hz`` from ``4 * f_start_hz`` up to
        ``0.475 * sample_rate_hz`` (default 20 kHz or that bound, whichever is lower).

    Returns
    -------
    MeasurementSignal
        ``samples`` shape (n_samples,), float64, peak 0.707; ``timing`` the part boundaries.
    """
    f_end_hz = default_f_end_hz(sample_rate_hz) if f_end_hz is None else float(f_end_hz)
    check_signal_parameters(sample_rate_hz, sweep_duration_s, f_start_hz, f_end_hz)
    fs = float(sample_rate_hz)

    chirp = sync_chirp(fs)
    sweep = exponential_sweep(fs, sweep_duration_s, f_start_hz, f_end_hz)
    sweep *= _fades(len(sweep), int(round(SWEEP_FADE_IN_S * fs)), int(round(SWEEP_FADE_OUT_S * fs)))

    n_lead = int(round(LEAD_SILENCE_S * fs))
    n_gap = int(round(PRE_SWEEP_GAP_S * fs))
    n_decay = int(round(DECAY_S * fs))
    n_tail = int(round(TAIL_SILENCE_S * fs))
    chirp1_start = n_lead
    sweep_start = chirp1_start + len(chirp) + n_gap
    chirp2_start = sweep_start + len(sweep) + n_decay
    n_samples = chirp2_start + len(chirp) + n_tail

    samples = np.zeros(n_samples)
    samples[chirp1_start : chirp1_start + len(chirp)] = chirp
    samples[sweep_start : sweep_start + len(sweep)] = sweep
    samples[chirp2_start : chirp2_start + len(chirp)] = chirp
    samples *= AMPLITUDE

    chirp_f_start_hz, chirp_f_end_hz = _chirp_band_hz(fs)
    timing = SignalTiming(
        sample_rate_hz=int(sample_rate_hz),
        n_samples=n_samples,
        chirp1_start_samples=chirp1_start,
        chirp2_start_samples=chirp2_start,
        chirp_n_samples=len(chirp),
        sweep_start_samples=sweep_start,
        sweep_n_samples=len(sweep),
        decay_n_samples=n_decay,
        f_start_hz=float(f_start_hz),
        f_end_hz=float(f_end_hz),
        chirp_f_start_hz=chirp_f_start_hz,
        chirp_f_end_hz=chirp_f_end_hz,
        sweep_fade_in_s=SWEEP_FADE_IN_S,
        sweep_fade_out_s=SWEEP_FADE_OUT_S,
        amplitude=AMPLITUDE,
    )
    return MeasurementSignal(samples=samples, timing=timing)


def _chirp_band_hz(sample_rate_hz: float) -> tuple[float, float]:
    return CHIRP_F_START_HZ, min(CHIRP_F_END_HZ, CHIRP_MAX_FRACTION * sample_rate_hz)


def _tukey(n_samples: int, fraction: float) -> np.ndarray:
    n_taper = max(1, int(fraction * n_samples / 2))
    return _fades(n_samples, n_taper, n_taper)


def _fades(n_samples: int, n_fade_in: int, n_fade_out: int) -> np.ndarray:
    """Raised-cosine fade-in and fade-out over the given number of samples."""
    window = np.ones(n_samples)
    if n_fade_in > 0:
        window[:n_fade_in] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_fade_in) / n_fade_in)
    if n_fade_out > 0:
        window[n_samples - n_fade_out :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(n_fade_out) + 1) / n_fade_out)
    return window
