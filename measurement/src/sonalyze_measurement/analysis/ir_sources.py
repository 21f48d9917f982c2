"""Recordings that are not of our own signal: an uploaded impulse response, or a recording of a user's sweep.

``impulse_response``: the upload is an impulse response (e.g. measured with another tool); it is
analysed as it is, from its direct sound on. ``sweep_deconvolution``: the upload is a recording of a
sweep and another upload of the same job is the sweep that was played; the impulse response is the
regularised spectral division of the two (no chirps, so no drift correction: both must share a clock).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from scipy import fft as sp_fft

from sonalyze_acoustics.alignment import resample
from sonalyze_acoustics.deconvolution import REGULARISATION, band_mask
from sonalyze_acoustics.parameters import find_direct_sound
from sonalyze_measurement.analysis.metrics import AnalysisTask, fill_parameters, read_described

PRE_WINDOW_S: Final = 0.05
"""Kept before the direct sound, as with our own signal."""
MAX_IR_S: Final = 10.0
MIN_TAIL_S: Final = 0.2
"""A recording must go on this long after the sweep ended, or the room's decay is not in it."""
EDGE_WINDOW_S: Final = 0.1
"""The sweep's first and last stretch whose zero crossings give its start and end frequency (their mean
frequency there: slightly inside the true range, which only narrows the band mask)."""
GATE_DB: Final = -40.0
MIN_SWEEP_HZ: Final = 20.0


def analyze_impulse_response(task: AnalysisTask, result: dict[str, Any]) -> None:
    """The upload is an impulse response: parameters from its direct sound on, at its own rate."""
    quality = result["quality"]
    recording = read_described(task.recording_path, quality)
    ir = recording.samples
    fs = recording.info.sample_rate_hz
    direct = find_direct_sound(ir, fs)
    first = max(0, direct.onset_index - int(PRE_WINDOW_S * fs))
    ir = ir[first : direct.onset_index + int(MAX_IR_S * fs)]
    quality["direct_delay_ms"] = direct.onset_index / fs * 1000.0
    fill_parameters(result, ir, fs, direct.onset_index - first, None, fs)


def analyze_sweep_recording(task: AnalysisTask, result: dict[str, Any]) -> None:
    """The upload recorded ``task.sweep_path`` being played: deconvolve, then parameters as usual."""
    quality = result["quality"]
    recording = read_described(task.recording_path, quality)
    sweep_quality: dict[str, Any] = {}
    sweep_recording = read_described(task.sweep_path or "", sweep_quality)
    fs = recording.info.sample_rate_hz
    sweep = sweep_recording.samples
    if sweep_recording.info.sample_rate_hz != fs:
        sweep = resample(sweep, sweep_recording.info.sample_rate_hz, fs)
    sweep = _trimmed(sweep)
    f_start_hz, f_end_hz = task.sweep_range_hz or estimate_sweep_range_hz(sweep, fs)
    if not MIN_SWEEP_HZ <= f_start_hz < f_end_hz <= fs / 2:
        raise ValueError(
            f"the sweep's range {f_start_hz:.0f}-{f_end_hz:.0f} Hz is not usable at {fs} Hz; "
            "give sweep_f_start and sweep_f_end"
        )
    samples = recording.samples
    n_fft = sp_fft.next_fast_len(len(samples) + len(sweep), real=True)
    spectrum_x = sp_fft.rfft(sweep, n_fft)
    power_x = np.abs(spectrum_x) ** 2
    eps = REGULARISATION * float(power_x.max())
    mask = band_mask(sp_fft.rfftfreq(n_fft, 1.0 / fs), f_start_hz, f_end_hz)
    response = sp_fft.irfft(sp_fft.rfft(samples, n_fft) * np.conj(spectrum_x) / (power_x + eps) * mask, n_fft)
    # lag L is fully measured while the whole sweep played from L still lies in the recording
    valid = response[: max(len(samples) - len(sweep), 1)]
    direct = find_direct_sound(valid, fs)
    n_tail = min(len(valid) - direct.onset_index, int(MAX_IR_S * fs))
    if n_tail < MIN_TAIL_S * fs:
        raise ValueError(
            f"the recording must go on at least {MIN_TAIL_S:g} s after the sweep ended "
            "(the room's decay is measured there)"
        )
    n_pre = int(PRE_WINDOW_S * fs)
    full = np.concatenate([response[-n_pre:], valid])  # negative lags (distortion) before lag 0
    onset = n_pre + direct.onset_index
    first = onset - n_pre
    ir = full[first : onset + n_tail]
    quality.update(
        {
            "sweep_upload_sample_rate_hz": sweep_recording.info.sample_rate_hz,
            "sweep_duration_s": round(len(sweep) / fs, 6),
            "sweep_f_start_hz": round(f_start_hz, 1),
            "sweep_f_end_hz": round(f_end_hz, 1),
            "sweep_range_estimated": task.sweep_range_hz is None,
            "direct_delay_ms": direct.onset_index / fs * 1000.0,
        }
    )
    fill_parameters(result, ir, fs, onset - first, (f_start_hz, f_end_hz), fs)


def _trimmed(sweep: np.ndarray) -> np.ndarray:
    """The sweep without silence around it (below ``GATE_DB`` of its peak)."""
    loud = np.flatnonzero(np.abs(sweep) > np.max(np.abs(sweep)) * 10 ** (GATE_DB / 20))
    return sweep[loud[0] : loud[-1] + 1] if loud.size else sweep


def estimate_sweep_range_hz(sweep: np.ndarray, fs: float) -> tuple[float, float]:
    """Start and end frequency of a (trimmed) sweep from the zero crossings of its first and last 100 ms."""
    n_edge = max(int(EDGE_WINDOW_S * fs), 8)

    def rate_hz(part: np.ndarray) -> float:
        crossings = np.count_nonzero(np.signbit(part[1:]) != np.signbit(part[:-1]))
        return crossings / 2 / (len(part) / fs)

    first, last = rate_hz(sweep[:n_edge]), rate_hz(sweep[-n_edge:])
    return min(first, last), max(first, last)


ANALYSERS: Final = {
    "impulse_response": analyze_impulse_response,
    "sweep_deconvolution": analyze_sweep_recording,
}
