"""A coarse magnitude response of an impulse response: third-octave band levels, for the app's plot."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from scipy import fft as sp_fft

THIRD_OCTAVE_STEPS: Final = range(-14, 15)
"""Exact third-octave centres 1000 * 2^(k/3): about 40 Hz to 16 kHz."""


def frequency_response(ir: np.ndarray, sample_rate_hz: float, low_hz: float, high_hz: float) -> dict[str, Any]:
    """Band levels in dB (0 dB = the loudest band) of the third-octave bands lying inside ``low_hz``-``high_hz``.

    Each level is the mean power of the response's spectrum over the band; bands outside what was
    measured (the sweep's range, the recording's bandwidth) are left out rather than shown as a roll-off.
    """
    ir = np.asarray(ir, dtype=np.float64)
    n_fft = sp_fft.next_fast_len(max(len(ir), 2), real=True)
    power = np.abs(sp_fft.rfft(ir, n_fft)) ** 2
    freqs_hz = sp_fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    centres: list[float] = []
    levels: list[float] = []
    for step in THIRD_OCTAVE_STEPS:
        centre_hz = 1000.0 * 2.0 ** (step / 3)
        lo_hz, hi_hz = centre_hz * 2 ** (-1 / 6), centre_hz * 2 ** (1 / 6)
        if lo_hz < low_hz or hi_hz > high_hz:
            continue
        inside = (freqs_hz >= lo_hz) & (freqs_hz < hi_hz)
        mean_power = float(np.mean(power[inside])) if np.any(inside) else 0.0
        if mean_power <= 0:
            continue
        centres.append(round(centre_hz, 1))
        levels.append(10.0 * np.log10(mean_power))
    top = max(levels) if levels else 0.0
    return {
        "frequencies_hz": centres,
        "magnitude_db": [round(level - top, 2) for level in levels],
        "resolution": "third octave",
        "reference": "0 dB = the loudest band",
    }
