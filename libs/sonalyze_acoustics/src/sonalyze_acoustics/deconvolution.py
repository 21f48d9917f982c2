"""From an aligned sweep recording to an impulse response (its direct sound: `parameters.find_direct_sound`).

Deconvolution is a regularised spectral division, ``H = Y X* / (|X|^2 + eps)``, band-limited by a
smooth mask to the sweep's range. Within the band it inverts the exact played sweep (fades
included), which is what Farina's time-reversed, amplitude-compensated inverse filter approximates;
`farina_inverse_filter` is kept for comparison. With an exponential sweep the harmonic distortion
products land at negative lags (before the direct sound), which the returned window keeps apart.

References
----------
Farina, A. (2000). Simultaneous measurement of impulse response and distortion with a swept-sine
technique. 108th AES Convention, preprint 5093.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import fft as sp_fft

REGULARISATION: Final = 1e-6
"""In-band regularisation, relative to the sweep spectrum's peak power."""
PRE_WINDOW_S: Final = 0.05
"""Negative lags kept in front of lag 0: room for an alignment that locked onto a reflection."""


@dataclass(frozen=True, slots=True)
class ImpulseResponse:
    """An impulse response with ``zero_index``: the sample at lag 0 (the signal's own timing)."""

    samples: np.ndarray
    sample_rate_hz: float
    zero_index: int


def deconvolve_sweep(
    recording: np.ndarray,
    sweep: np.ndarray,
    sample_rate_hz: float,
    *,
    sweep_start_index: int,
    f_start_hz: float,
    f_end_hz: float,
    ir_duration_s: float,
    pre_window_s: float = PRE_WINDOW_S,
    regularisation: float = REGULARISATION,
) -> ImpulseResponse:
    """Impulse response of the path from the played sweep to the aligned recording.

    Parameters
    ----------
    recording : ndarray, shape (n,)
        Recording aligned to the signal (same rate and clock), e.g. from
        `sonalyze_acoustics.alignment.align_recording`.
    sweep : ndarray, shape (m,)
        The sweep exactly as played (fades and amplitude included).
    sample_rate_hz : float
        Common sample rate.
    sweep_start_index : int
        Where the sweep starts in ``recording``'s time base.
    f_start_hz, f_end_hz : float
        The sweep's range; the result is band-limited to it with half-octave / quarter-octave
        raised-cosine edges.
    ir_duration_s : float
        Length of the response after lag 0 (at most the silence after the sweep).
    pre_window_s : float
        Negative lags kept before lag 0 (default 50 ms).
    regularisation : float
        In-band ``eps`` relative to ``max |X|^2``.

    Returns
    -------
    ImpulseResponse
        ``samples`` shape (pre + ir_duration_s * fs,), lag 0 at ``zero_index``.
    """
    recording = np.asarray(recording, dtype=np.float64)
    sweep = np.asarray(sweep, dtype=np.float64)
    if recording.ndim != 1 or sweep.ndim != 1:
        raise ValueError("recording and sweep must be 1-D")
    if not 0 < f_start_hz < f_end_hz <= sample_rate_hz / 2:
        raise ValueError(f"need 0 < f_start_hz < f_end_hz <= fs/2, got {f_start_hz}, {f_end_hz}")
    if ir_duration_s <= 0:
        raise ValueError(f"ir_duration_s must be positive, got {ir_duration_s}")
    n_pre = int(round(pre_window_s * sample_rate_hz))
    n_ir = int(round(ir_duration_s * sample_rate_hz))
    first = sweep_start_index - n_pre
    segment = _take(recording, first, n_pre + len(sweep) + n_ir)
    # negative lags reach back a whole sweep (distortion products): keep them from wrapping onto the IR
    n_fft = sp_fft.next_fast_len(len(segment) + len(sweep), real=True)
    spectrum_y = sp_fft.rfft(segment, n_fft)
    spectrum_x = sp_fft.rfft(sweep, n_fft)
    power_x = np.abs(spectrum_x) ** 2
    eps = regularisation * float(power_x.max())
    freqs_hz = sp_fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    mask = band_mask(freqs_hz, f_start_hz, f_end_hz)
    transfer = spectrum_y * np.conj(spectrum_x) / (power_x + eps) * mask
    response = sp_fft.irfft(transfer, n_fft)
    return ImpulseResponse(
        samples=response[: n_pre + n_ir].copy(), sample_rate_hz=float(sample_rate_hz), zero_index=n_pre
    )


def band_mask(freqs_hz: np.ndarray, f_start_hz: float, f_end_hz: float) -> np.ndarray:
    """1 inside ``[sqrt(2) f_start, 2^-1/4 f_end]``, raised-cosine (in log frequency) to 0 at the sweep's ends."""
    log_f = np.log2(np.maximum(freqs_hz, 1e-9))
    low = _ramp(log_f, np.log2(f_start_hz), np.log2(f_start_hz) + 0.5)
    high = 1.0 - _ramp(log_f, np.log2(f_end_hz) - 0.25, np.log2(f_end_hz))
    return low * high


def farina_inverse_filter(
    sample_rate_hz: float, duration_s: float, f_start_hz: float, f_end_hz: float, sweep: np.ndarray
) -> np.ndarray:
    """Farina's inverse filter: the sweep reversed in time with a -6 dB/octave amplitude envelope.

    ``f(t) = x(T - t) * exp(-t / L) `` with ``L = T / ln(f2 / f1)``, scaled so that
    ``sweep * f`` has unit gain at the geometric centre of the sweep's band.

    Returns
    -------
    ndarray, shape (len(sweep),)
    """
    t_s = np.arange(len(sweep)) / sample_rate_hz
    rate_s = duration_s / np.log(f_end_hz / f_start_hz)
    inverse = sweep[::-1] * np.exp(-t_s / rate_s)
    centre_hz = np.sqrt(f_start_hz * f_end_hz)
    n_fft = sp_fft.next_fast_len(2 * len(sweep), real=True)
    gain = sp_fft.rfft(sweep, n_fft) * sp_fft.rfft(inverse, n_fft)
    freqs_hz = sp_fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    return inverse / np.abs(gain[np.argmin(np.abs(freqs_hz - centre_hz))])


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, raised cosine between."""
    position = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * position)


def _take(samples: np.ndarray, first: int, n_samples: int) -> np.ndarray:
    out = np.zeros(n_samples)
    lo, hi = max(first, 0), min(first + n_samples, len(samples))
    if hi > lo:
        out[lo - first : hi - first] = samples[lo:hi]
    return out
