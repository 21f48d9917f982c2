"""Finding the sync chirps, the clock drift and the aligned recording in simulated phone recordings."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy import signal as sp_signal

from sonalyze_acoustics.alignment import SyncNotFound, align_recording, find_sync_chirps, resample
from sonalyze_acoustics.signals import MeasurementSignal, measurement_signal, sync_chirp

SIGNAL_RATE_HZ = 48000


@lru_cache(maxsize=4)
def _signal(sweep_duration_s: float = 2.0) -> MeasurementSignal:
    return measurement_signal(SIGNAL_RATE_HZ, sweep_duration_s=sweep_duration_s)


def _room(seed: int = 0, t60_s: float = 0.8, reflection_gain: float = 0.5) -> np.ndarray:
    """Direct sound at 3 ms, a reflection at 7 ms, then an exponentially decaying noise tail."""
    rng = np.random.default_rng(seed)
    n = int((t60_s + 0.05) * SIGNAL_RATE_HZ)
    t_s = np.arange(n) / SIGNAL_RATE_HZ
    ir = 0.05 * rng.standard_normal(n) * np.exp(-6.9 * t_s / t60_s)
    ir[: int(0.004 * SIGNAL_RATE_HZ)] = 0.0
    ir[int(0.003 * SIGNAL_RATE_HZ)] = 1.0
    ir[int(0.007 * SIGNAL_RATE_HZ)] += reflection_gain
    return ir


def _record(
    ir: np.ndarray,
    *,
    recording_rate_hz: int = 44100,
    drift_ppm: float = 0.0,
    delay_s: float = 0.7,
    snr_db: float = 60.0,
    seed: int = 1,
) -> tuple[np.ndarray, float]:
    """The signal through ``ir``, delayed, recorded on a drifting clock; returns (samples, true ratio)."""
    wet = sp_signal.fftconvolve(_signal().samples, ir)
    wet = np.concatenate([np.zeros(int(delay_s * SIGNAL_RATE_HZ)), wet, np.zeros(SIGNAL_RATE_HZ // 4)])
    n_in = sp_fft.next_fast_len(len(wet), real=True)
    wet = np.concatenate([wet, np.zeros(n_in - len(wet))])
    n_out = int(round(n_in * recording_rate_hz * (1 + drift_ppm * 1e-6) / SIGNAL_RATE_HZ))
    recorded = sp_signal.resample(wet, n_out)
    recorded /= np.max(np.abs(recorded))
    noise = np.random.default_rng(seed).normal(0, 10 ** (-snr_db / 20), len(recorded))
    true_ratio = n_out / n_in * SIGNAL_RATE_HZ / recording_rate_hz  # realised (1 + drift)
    return recorded + noise, true_ratio


def _find(recording: np.ndarray, recording_rate_hz: float):
    t = _signal().timing
    return find_sync_chirps(recording, recording_rate_hz, sync_chirp(SIGNAL_RATE_HZ), SIGNAL_RATE_HZ, t.chirp_spacing_s)


class TestDrift:
    @pytest.mark.parametrize("drift_ppm", [0.0, 50.0, -50.0, 200.0, -200.0])
    def test_drift_is_measured_within_two_ppm(self, drift_ppm: float) -> None:
        recording, true_ratio = _record(_room(), drift_ppm=drift_ppm)
        sync = _find(recording, 44100)
        assert sync.drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=2.0)

    def test_drift_survives_20_db_noise(self) -> None:
        recording, true_ratio = _record(_room(), drift_ppm=-120.0, snr_db=20.0)
        assert _find(recording, 44100).drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=3.0)

    def test_reflection_louder_than_direct_does_not_bias_the_drift(self) -> None:
        recording, true_ratio = _record(_room(reflection_gain=1.6), drift_ppm=150.0)
        assert _find(recording, 44100).drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=2.0)

    def test_long_reverberation(self) -> None:
        recording, true_ratio = _record(_room(t60_s=3.0, seed=3), drift_ppm=80.0, snr_db=40.0)
        assert _find(recording, 44100).drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=2.0)


class TestOffset:
    @pytest.mark.parametrize("delay_s", [0.0, 0.05, 3.7])
    def test_signal_start_is_found_wherever_the_recording_starts(self, delay_s: float) -> None:
        recording, true_ratio = _record(_room(), delay_s=delay_s, recording_rate_hz=48000)
        sync = _find(recording, 48000)
        aligned = align_recording(recording, sync, SIGNAL_RATE_HZ, _signal().timing.chirp1_start_s, 1000)
        # the chirp peaks at the direct sound, 3 ms after the signal starts
        assert aligned.offset_s == pytest.approx(delay_s + 0.003, abs=0.0005)

    def test_recording_that_started_late_is_padded_with_zeros(self) -> None:
        recording, _ = _record(_room(), delay_s=0.0, recording_rate_hz=48000)
        cut = recording[int(0.3 * 48000) :]  # lost 0.3 s of the 0.5 s lead silence
        sync = _find(cut, 48000)
        t = _signal().timing
        aligned = align_recording(cut, sync, SIGNAL_RATE_HZ, t.chirp1_start_s, t.n_samples)
        assert aligned.offset_s == pytest.approx(-0.3 + 0.003, abs=0.0005)
        assert np.max(np.abs(aligned.samples[: int(0.29 * 48000)])) < 1e-2


class TestSampleRates:
    @pytest.mark.parametrize("recording_rate_hz", [8000, 16000, 44100, 96000])
    def test_other_recording_rates(self, recording_rate_hz: int) -> None:
        recording, true_ratio = _record(_room(), recording_rate_hz=recording_rate_hz, drift_ppm=100.0)
        sync = _find(recording, recording_rate_hz)
        tolerance_ppm = 2.0 if recording_rate_hz >= 44100 else 6.0
        assert sync.drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=tolerance_ppm)

    def test_aligned_recording_matches_the_played_signal(self) -> None:
        ir = np.zeros(200)
        ir[0] = 1.0
        recording, _ = _record(ir, recording_rate_hz=44100, drift_ppm=-200.0, snr_db=80.0)
        sync = _find(recording, 44100)
        t = _signal().timing
        aligned = align_recording(recording, sync, SIGNAL_RATE_HZ, t.chirp1_start_s, t.n_samples)
        reference = _signal().samples
        # the whole signal lines up to within a sample, sweep included (drift removed)
        lo, hi = t.sweep_start_samples, t.sweep_end_samples
        a, b = aligned.samples[lo:hi], reference[lo:hi]
        correlation = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
        assert correlation > 0.99

    def test_resample_keeps_a_tone(self) -> None:
        t_s = np.arange(44100) / 44100
        tone = np.sin(2 * np.pi * 1000 * t_s)
        out = resample(tone, 44100, 48000)
        assert len(out) == 48000
        spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(46000)))
        assert np.fft.rfftfreq(46000, 1 / 48000)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)


class TestNotFound:
    def test_noise_only(self) -> None:
        noise = np.random.default_rng(5).normal(0, 0.1, 10 * 44100)
        with pytest.raises(SyncNotFound, match="not found"):
            _find(noise, 44100)

    def test_digital_silence(self) -> None:
        with pytest.raises(SyncNotFound, match="silent"):
            _find(np.zeros(10 * 44100), 44100)

    def test_recording_without_the_second_chirp(self) -> None:
        recording, _ = _record(_room(), recording_rate_hz=44100)
        t = _signal().timing
        cut = recording[: int((0.7 + t.chirp2_start_s - 0.1) * 44100)]
        cut = np.concatenate([cut, np.random.default_rng(2).normal(0, 1e-3, 3 * 44100)])
        with pytest.raises(SyncNotFound):
            _find(cut, 44100)

    def test_too_short(self) -> None:
        with pytest.raises(SyncNotFound, match="shorter"):
            _find(np.ones(44100), 44100)

    def test_a_loud_click_elsewhere_does_not_fool_it(self) -> None:
        recording, true_ratio = _record(_room(), drift_ppm=60.0, delay_s=2.0)
        recording[int(0.5 * 44100) : int(0.5 * 44100) + 200] = 1.0  # a bump before the signal
        sync = _find(recording, 44100)
        assert sync.drift_ppm == pytest.approx((true_ratio - 1) * 1e6, abs=2.0)


class TestArguments:
    def test_two_dimensional_recording_is_refused(self) -> None:
        with pytest.raises(ValueError, match="1-D"):
            find_sync_chirps(np.zeros((2, 100)), 48000, sync_chirp(48000), 48000, 1.0)

    def test_negative_spacing_is_refused(self) -> None:
        with pytest.raises(ValueError, match="chirp_spacing_s"):
            find_sync_chirps(np.zeros(100), 48000, sync_chirp(48000), 48000, -1.0)
