"""The measurement signal: layout, determinism, sweep law, fades, bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal as sp_signal

from sonalyze_acoustics.signals import (
    AMPLITUDE,
    CHIRP_DURATION_S,
    DECAY_S,
    LEAD_SILENCE_S,
    exponential_sweep,
    measurement_signal,
    sync_chirp,
)


def _instantaneous_hz(samples: np.ndarray, fs: float) -> np.ndarray:
    phase = np.unwrap(np.angle(sp_signal.hilbert(samples)))
    return np.diff(phase) * fs / (2 * np.pi)


class TestLayout:
    @pytest.mark.parametrize("fs", [44100, 48000, 96000])
    def test_parts_sit_where_the_timing_says_and_silence_is_exact(self, fs: int) -> None:
        signal = measurement_signal(fs)
        t = signal.timing
        x = signal.samples
        assert len(x) == t.n_samples
        assert t.chirp1_start_s == pytest.approx(LEAD_SILENCE_S, abs=1 / fs)
        assert t.chirp_duration_s == pytest.approx(CHIRP_DURATION_S, abs=1 / fs)
        assert t.decay_s == pytest.approx(DECAY_S, abs=1 / fs)
        assert t.sweep_duration_s == pytest.approx(5.0, abs=1 / fs)
        assert t.total_duration_s == pytest.approx(10.0, abs=1e-3)
        silent = [
            (0, t.chirp1_start_samples),
            (t.chirp1_start_samples + t.chirp_n_samples, t.sweep_start_samples),
            (t.sweep_end_samples, t.chirp2_start_samples),
            (t.chirp2_start_samples + t.chirp_n_samples, t.n_samples),
        ]
        for lo, hi in silent:
            assert hi > lo
            assert not np.any(x[lo:hi])
        for lo, hi in [
            (t.chirp1_start_samples, t.chirp1_start_samples + t.chirp_n_samples),
            (t.sweep_start_samples, t.sweep_end_samples),
            (t.chirp2_start_samples, t.chirp2_start_samples + t.chirp_n_samples),
        ]:
            assert np.max(np.abs(x[lo:hi])) == pytest.approx(AMPLITUDE, rel=1e-3)

    def test_both_chirps_are_identical(self) -> None:
        signal = measurement_signal(48000)
        t = signal.timing
        first = signal.samples[t.chirp1_start_samples : t.chirp1_start_samples + t.chirp_n_samples]
        second = signal.samples[t.chirp2_start_samples : t.chirp2_start_samples + t.chirp_n_samples]
        np.testing.assert_array_equal(first, second)
        np.testing.assert_allclose(first, AMPLITUDE * sync_chirp(48000))

    def test_spacing_is_chirp2_minus_chirp1(self) -> None:
        t = measurement_signal(48000, sweep_duration_s=3.0).timing
        assert t.chirp_spacing_s == pytest.approx(t.chirp2_start_s - t.chirp1_start_s)
        assert t.chirp_spacing_s == pytest.approx(0.2 + 0.5 + 3.0 + DECAY_S)

    def test_timing_dict_is_json_and_consistent(self) -> None:
        t = measurement_signal(44100).timing
        as_dict = json.loads(json.dumps(t.as_dict()))
        assert as_dict["sweep_end_samples"] == t.sweep_start_samples + t.sweep_n_samples
        assert as_dict["sweep_start_s"] == pytest.approx(t.sweep_start_samples / 44100)
        assert as_dict["tail_silence_s"] > 0.5


class TestDeterminism:
    def test_same_parameters_give_identical_samples(self) -> None:
        a = measurement_signal(48000, sweep_duration_s=2.0, f_start_hz=40.0, f_end_hz=18000.0)
        b = measurement_signal(48000, sweep_duration_s=2.0, f_start_hz=40.0, f_end_hz=18000.0)
        np.testing.assert_array_equal(a.samples, b.samples)
        assert a.timing == b.timing

    def test_other_parameters_give_other_samples(self) -> None:
        a = measurement_signal(48000, sweep_duration_s=2.0)
        b = measurement_signal(48000, sweep_duration_s=2.0, f_start_hz=60.0)
        assert not np.array_equal(a.samples, b.samples)


class TestSweep:
    def test_instantaneous_frequency_follows_the_exponential_law(self) -> None:
        fs, duration_s, f1, f2 = 48000, 4.0, 50.0, 20000.0
        sweep = exponential_sweep(fs, duration_s, f1, f2)
        inst_hz = _instantaneous_hz(sweep, fs)
        rate_s = duration_s / np.log(f2 / f1)
        for t_s in (0.5, 1.5, 2.5, 3.5):
            index = int(t_s * fs)
            expected = f1 * np.exp(t_s / rate_s)
            assert np.median(inst_hz[index - 50 : index + 50]) == pytest.approx(expected, rel=0.01)

    def test_sweep_ends_are_faded(self) -> None:
        signal = measurement_signal(48000)
        t = signal.timing
        sweep = signal.samples[t.sweep_start_samples : t.sweep_end_samples]
        assert abs(sweep[0]) < 1e-9
        assert abs(sweep[-1]) < 1e-3
        fade_in = int(t.sweep_fade_in_s * 48000)
        assert np.max(np.abs(sweep[: fade_in // 10])) < 0.05 * AMPLITUDE
        assert np.max(np.abs(sweep[fade_in : 2 * fade_in])) == pytest.approx(AMPLITUDE, rel=0.01)

    def test_sweep_spectrum_covers_its_range(self) -> None:
        signal = measurement_signal(48000)
        t = signal.timing
        sweep = signal.samples[t.sweep_start_samples : t.sweep_end_samples]
        spectrum = np.abs(np.fft.rfft(sweep)) ** 2
        freqs = np.fft.rfftfreq(len(sweep), 1 / 48000)

        def level(lo: float, hi: float) -> float:
            sel = (freqs >= lo) & (freqs < hi)
            return 10 * np.log10(np.mean(spectrum[sel] * freqs[sel]))  # pink -> flat when times f

        in_band = [level(f, f * 1.2) for f in (100, 1000, 10000)]
        assert max(in_band) - min(in_band) < 1.5
        assert level(22000, 23000) < in_band[1] - 40


class TestLowSampleRate:
    def test_chirp_and_sweep_stay_below_nyquist(self) -> None:
        signal = measurement_signal(8000)
        t = signal.timing
        assert t.f_end_hz == pytest.approx(0.475 * 8000)
        assert t.chirp_f_end_hz <= 0.45 * 8000
        chirp = signal.samples[t.chirp1_start_samples : t.chirp1_start_samples + t.chirp_n_samples]
        assert np.max(_instantaneous_hz(chirp, 8000)[100:-100]) < 4000


class TestBounds:
    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"sample_rate_hz": 4000}, "sample_rate_hz"),
            ({"sample_rate_hz": 400000}, "sample_rate_hz"),
            ({"sweep_duration_s": 0.5}, "duration_s"),
            ({"sweep_duration_s": 31.0}, "duration_s"),
            ({"f_start_hz": 10.0}, "f_start_hz"),
            ({"f_start_hz": 2000.0}, "f_start_hz"),
            ({"f_end_hz": 23000.0}, "f_end_hz"),
            ({"f_start_hz": 500.0, "f_end_hz": 1000.0}, "f_end_hz"),
        ],
    )
    def test_out_of_bounds_parameter_is_named(self, kwargs: dict, name: str) -> None:
        fs = kwargs.pop("sample_rate_hz", 48000)
        with pytest.raises(ValueError, match=name):
            measurement_signal(fs, **kwargs)
