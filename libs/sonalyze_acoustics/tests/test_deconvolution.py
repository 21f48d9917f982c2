"""Deconvolution of the sweep into an impulse response, and the direct sound."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy import signal as sp_signal

from sonalyze_acoustics.deconvolution import (
    band_mask,
    deconvolve_sweep,
    farina_inverse_filter,
)
from sonalyze_acoustics.signals import MeasurementSignal, measurement_signal

FS = 48000


@lru_cache(maxsize=2)
def _signal() -> MeasurementSignal:
    return measurement_signal(FS, sweep_duration_s=2.0)


def _sweep() -> np.ndarray:
    t = _signal().timing
    return _signal().samples[t.sweep_start_samples : t.sweep_end_samples]


def _deconvolve(recording: np.ndarray, ir_duration_s: float = 1.0):
    t = _signal().timing
    return deconvolve_sweep(
        recording,
        _sweep(),
        FS,
        sweep_start_index=t.sweep_start_samples,
        f_start_hz=t.f_start_hz,
        f_end_hz=t.f_end_hz,
        ir_duration_s=ir_duration_s,
    )


def _band_limited(ir: np.ndarray, n_fft: int) -> np.ndarray:
    """What deconvolution can recover of ``ir``: the same band mask applied."""
    t = _signal().timing
    spectrum = np.fft.rfft(ir, n_fft) * band_mask(np.fft.rfftfreq(n_fft, 1 / FS), t.f_start_hz, t.f_end_hz)
    return np.fft.irfft(spectrum, n_fft)


class TestRecovery:
    def test_known_impulse_response_is_recovered(self) -> None:
        rng = np.random.default_rng(4)
        ir = np.zeros(int(0.6 * FS))
        ir[100] = 1.0
        ir[700] = -0.4
        tail = np.arange(len(ir) - 800) / FS
        ir[800:] = 0.05 * rng.standard_normal(len(tail)) * np.exp(-6.9 * tail / 0.4)
        recording = sp_signal.fftconvolve(_signal().samples, ir)[: _signal().timing.n_samples]
        result = _deconvolve(recording)
        measured = result.samples[result.zero_index : result.zero_index + len(ir)]
        expected = _band_limited(ir, len(ir) + 4096)[: len(ir)]
        error_db = 10 * np.log10(np.sum((measured - expected) ** 2) / np.sum(expected**2))
        assert error_db < -40
        assert np.argmax(np.abs(measured)) == 100

    def test_gain_is_unity_in_band(self) -> None:
        ir = np.zeros(1000)
        ir[0] = 0.25
        recording = sp_signal.fftconvolve(_signal().samples, ir)[: _signal().timing.n_samples]
        result = _deconvolve(recording, ir_duration_s=0.5)
        spectrum = np.abs(np.fft.rfft(result.samples, 1 << 16))
        freqs = np.fft.rfftfreq(1 << 16, 1 / FS)
        in_band = (freqs > 150) & (freqs < 15000)
        np.testing.assert_allclose(spectrum[in_band], 0.25, rtol=0.01)
        assert np.max(spectrum[freqs > 21000]) < 0.25 * 1e-3

    def test_harmonic_distortion_lands_before_lag_zero(self) -> None:
        t = _signal().timing
        played = _signal().samples
        linear = _deconvolve(played, ir_duration_s=1.0)
        distorted = _deconvolve(played + 0.2 * played**2 + 0.1 * played**3, ir_duration_s=1.0)  # a nonlinear speaker
        zero = linear.zero_index
        scale = distorted.samples[zero] / linear.samples[zero]
        difference = distorted.samples - scale * linear.samples
        peak = np.max(np.abs(linear.samples))
        # after the direct sound the response is as clean as the linear one; the products sit at negative lags
        after = difference[zero + int(0.002 * FS) :]
        assert 20 * np.log10(np.max(np.abs(after)) / peak) < -50
        lag_2nd_s = t.sweep_duration_s * np.log(2) / np.log(t.f_end_hz / t.f_start_hz)
        assert lag_2nd_s > 0.05  # beyond the kept pre-window of 50 ms

    def test_noise_is_reduced_by_the_sweep(self) -> None:
        rng = np.random.default_rng(9)
        ir = np.zeros(100)
        ir[10] = 1.0
        recording = sp_signal.fftconvolve(_signal().samples, ir)[: _signal().timing.n_samples]
        noise_rms = 0.01 * np.max(np.abs(recording))  # 40 dB peak-to-noise in the recording
        result = _deconvolve(recording + rng.normal(0, noise_rms, len(recording)))
        tail = result.samples[result.zero_index + int(0.1 * FS) :]
        inr_db = 20 * np.log10(np.max(np.abs(result.samples)) / np.sqrt(np.mean(tail**2)))
        assert inr_db > 55


class TestBandMask:
    def test_mask_is_one_in_band_and_zero_outside(self) -> None:
        freqs = np.array([10.0, 50.0, 80.0, 1000.0, 16000.0, 20000.0, 23000.0])
        mask = band_mask(freqs, 50.0, 20000.0)
        np.testing.assert_allclose(mask, [0, 0, 1, 1, 1, 0, 0], atol=1e-12)


class TestFarinaInverseFilter:
    def test_sweep_convolved_with_its_inverse_is_an_impulse(self) -> None:
        t = _signal().timing
        sweep = _sweep()
        inverse = farina_inverse_filter(FS, t.sweep_duration_s, t.f_start_hz, t.f_end_hz, sweep)
        pulse = sp_signal.fftconvolve(sweep, inverse)
        peak = int(np.argmax(np.abs(pulse)))
        assert abs(peak - (len(sweep) - 1)) <= 1
        away = np.concatenate([pulse[: peak - int(0.01 * FS)], pulse[peak + int(0.01 * FS) :]])
        assert 20 * np.log10(np.max(np.abs(away)) / np.abs(pulse[peak])) < -30


class TestArguments:
    def test_band_must_be_inside_nyquist(self) -> None:
        with pytest.raises(ValueError, match="f_end_hz"):
            deconvolve_sweep(
                np.zeros(1000), np.ones(100), FS, sweep_start_index=0, f_start_hz=50, f_end_hz=30000, ir_duration_s=0.1
            )

    def test_duration_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="ir_duration_s"):
            deconvolve_sweep(
                np.zeros(1000), np.ones(100), FS, sweep_start_index=0, f_start_hz=50, f_end_hz=20000, ir_duration_s=0
            )
