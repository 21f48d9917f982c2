"""What the web page's plots need, made from the impulse response the analysis already holds.

Decimated so a result item stays a few tens of kB: the impulse response as a min/max envelope (fine bins
around the direct sound, coarse ones after), its level in dB, the smoothed frequency response, and the
decay curves with their regression ranges (from ``sonalyze_acoustics``). No second pass over the recording.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

IR_BINS: Final = ((0.1, 0.0002), (0.3, 0.001))
"""Bin widths of the envelope: 0.2 ms from 5 ms before the direct sound to 100 ms after it, 1 ms to 300 ms, then
:data:`IR_COARSE_BIN_S` (and before the fine part)."""
IR_FINE_START_S: Final = -0.005
IR_COARSE_BIN_S: Final = 0.008

FR_POINTS_PER_OCTAVE: Final = 24
FR_SMOOTHING_OCTAVES: Final = 1 / 6
FR_RANGE_HZ: Final = (20.0, 20000.0)
FLOOR_DB: Final = -200.0


def plot_data(ir: np.ndarray, sample_rate_hz: int, onset_index: int, decay_curves: dict[str, Any]) -> dict[str, Any]:
    """``{impulse_response, frequency_response, decay_curves}`` for one recording (times relative to the onset)."""
    return {
        "impulse_response": impulse_response_envelope(ir, sample_rate_hz, onset_index),
        "frequency_response": frequency_response(ir, sample_rate_hz),
        "decay_curves": decay_curves,
    }


def impulse_response_envelope(ir: np.ndarray, sample_rate_hz: int, onset_index: int) -> dict[str, list[float]]:
    """Per bin: start time, min and max of the normalised response, and the peak level in dB re the maximum."""
    fs = float(sample_rate_hz)
    peak = float(np.max(np.abs(ir))) or 1.0
    normalised = ir / peak
    coarse = max(int(IR_COARSE_BIN_S * fs), 1)
    start = max(onset_index + int(IR_FINE_START_S * fs), 0)
    parts = [np.arange(0, start, coarse)]
    for end_s, width_s in IR_BINS:
        stop = min(max(onset_index + int(end_s * fs), start), ir.size)
        parts.append(np.arange(start, stop, max(int(width_s * fs), 1)))
        start = stop
    parts.append(np.arange(start, ir.size, coarse))
    edges = np.concatenate(parts).astype(np.intp)
    edges = np.unique(edges)
    low = np.minimum.reduceat(normalised, edges)
    high = np.maximum.reduceat(normalised, edges)
    magnitude = np.maximum(np.abs(low), np.abs(high))
    with np.errstate(divide="ignore"):
        level_db = np.maximum(20.0 * np.log10(magnitude), FLOOR_DB)
    return {
        "time_s": [round(float(t), 5) for t in (edges - onset_index) / fs],
        "min": [round(float(v), 5) for v in low],
        "max": [round(float(v), 5) for v in high],
        "level_db": [round(float(v), 2) for v in level_db],
    }


def frequency_response(ir: np.ndarray, sample_rate_hz: int) -> dict[str, list[float]]:
    """Magnitude of the response's spectrum, 1/6-octave power-smoothed, on a 1/24-octave grid, 0 dB at its maximum."""
    fs = float(sample_rate_hz)
    n_fft = 1 << int(np.ceil(np.log2(max(ir.size, 2))))
    power = np.abs(np.fft.rfft(ir, n_fft)) ** 2
    freqs_hz = np.fft.rfftfreq(n_fft, 1.0 / fs)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    top_hz = min(FR_RANGE_HZ[1], 0.5 * fs / 2 ** (FR_SMOOTHING_OCTAVES / 2))
    n_points = int(np.floor(np.log2(top_hz / FR_RANGE_HZ[0]) * FR_POINTS_PER_OCTAVE)) + 1
    centres_hz = FR_RANGE_HZ[0] * 2.0 ** (np.arange(n_points) / FR_POINTS_PER_OCTAVE)
    half = 2.0 ** (FR_SMOOTHING_OCTAVES / 2)
    low = np.searchsorted(freqs_hz, centres_hz / half)
    high = np.maximum(np.searchsorted(freqs_hz, centres_hz * half), low + 1)
    mean_power = (cumulative[high] - cumulative[low]) / (high - low)
    with np.errstate(divide="ignore"):
        level_db = 10.0 * np.log10(mean_power / (float(np.max(mean_power)) or 1.0))
    level_db = np.maximum(np.nan_to_num(level_db, nan=FLOOR_DB, neginf=FLOOR_DB), FLOOR_DB)
    return {
        "frequency_hz": [round(float(f), 2) for f in centres_hz],
        "level_db": [round(float(v), 2) for v in level_db],
    }
