"""Octave-band filter bank: design, energy bookkeeping, and why it is time-reversed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from sonalyze_acoustics import bands

FS = 48000.0


class TestBandDesign:
    def test_exact_centres_follow_iec_61260_base_ten(self) -> None:
        assert bands.exact_center_hz(1000) == pytest.approx(1000.0)
        assert bands.exact_center_hz(125) == pytest.approx(125.89, abs=0.01)
        assert bands.exact_center_hz(8000) == pytest.approx(7943.3, abs=0.1)

    def test_edges_are_half_an_octave_either_side(self) -> None:
        low_hz, high_hz = bands.band_edges_hz(1000)
        assert high_hz / low_hz == pytest.approx(bands.OCTAVE_RATIO)
        assert np.sqrt(low_hz * high_hz) == pytest.approx(1000.0)

    def test_response_is_minus_3_db_at_the_edges_and_0_db_at_the_centre(self) -> None:
        sos = bands.octave_band_sos(1000, FS)
        low_hz, high_hz = bands.band_edges_hz(1000)
        _, response = scipy.signal.sosfreqz(sos, worN=[low_hz, 1000.0, high_hz], fs=FS)
        np.testing.assert_allclose(20 * np.log10(np.abs(response)), [-3.01, 0.0, -3.01], atol=0.02)

    def test_8_khz_band_is_unavailable_at_16_khz(self) -> None:
        assert bands.available_bands_hz(16000) == (125, 250, 500, 1000, 2000, 4000)
        assert bands.available_bands_hz(44100) == bands.OCTAVE_BANDS_HZ
        with pytest.raises(ValueError, match="nominal_hz 8000"):
            bands.octave_band_sos(8000, 16000)


class TestFilterOctaveBands:
    def test_white_noise_energy_splits_by_bandwidth(self) -> None:
        noise = np.random.default_rng(1).standard_normal(int(20 * FS))
        energies = np.sum(bands.filter_octave_bands(noise, FS) ** 2, axis=-1)
        edges = np.array([bands.band_edges_hz(band) for band in bands.OCTAVE_BANDS_HZ])
        # A 3rd-order Butterworth's noise bandwidth is (pi/6) / sin(pi/6) = 1.047 times its -3 dB bandwidth.
        expected = np.sum(noise**2) * (edges[:, 1] - edges[:, 0]) / (FS / 2) * 1.047
        np.testing.assert_allclose(energies[:7], expected, rtol=0.06)

    def test_time_reversed_filter_puts_an_impulses_energy_before_it(self) -> None:
        impulse = np.zeros(int(FS))
        impulse[24000] = 1.0
        band_signals = bands.filter_octave_bands(impulse, FS)
        after = np.sum(band_signals[:, 24001:] ** 2, axis=-1)
        before = np.sum(band_signals[:, :24001] ** 2, axis=-1)
        assert np.all(after < 1e-12 * before)

    def test_energy_delay_is_the_centroid_advance(self) -> None:
        impulse = np.zeros(int(FS))
        impulse[24000] = 1.0
        energy = bands.filter_octave_bands(impulse, FS, bands_hz=(125,), include_broadband=False)[0] ** 2
        centroid_s = (24000 - np.sum(np.arange(energy.size) * energy) / np.sum(energy)) / FS
        assert centroid_s == pytest.approx(bands.band_energy_delay_s(125, FS), rel=1e-3)

    def test_band_energies_match_the_filtered_signal(self) -> None:
        segment = np.random.default_rng(2).standard_normal(200)
        padded = np.concatenate([np.zeros(int(0.2 * FS)), segment, np.zeros(int(0.2 * FS))])
        expected = np.sum(bands.filter_octave_bands(padded, FS) ** 2, axis=-1)
        np.testing.assert_allclose(bands.band_energies(segment, FS), expected, rtol=1e-3)

    def test_reversed_filtering_keeps_a_short_low_band_decay_unbiased(self) -> None:
        """A 0.15 s noise decay (B T = 13, below ISO 3382-2's 16) through the 125 Hz band, mean of 20 seeds."""
        t60_s = 0.15
        lead = int(0.1 * FS)
        t_s = np.arange(int(FS)) / FS
        fitted_s = []
        for seed in range(20):
            decay = np.random.default_rng(seed).standard_normal(t_s.size) * np.exp(-6.9078 * t_s / t60_s)
            signal = np.concatenate([np.zeros(lead), decay])
            energy = bands.filter_octave_bands(signal, FS, bands_hz=(125,), include_broadband=False)[0, lead:] ** 2
            edc_db = 10 * np.log10(np.cumsum(energy[::-1])[::-1] / np.sum(energy))
            index = np.flatnonzero((edc_db <= -5) & (edc_db >= -35))
            fitted_s.append(-60.0 / np.polyfit(index / FS, edc_db[index], 1)[0])
        assert np.mean(fitted_s) == pytest.approx(t60_s, rel=0.03)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"ir": np.zeros((2, 100))}, "ir must be 1-D"),
            ({"ir": np.zeros(4)}, "at least 16"),
            ({"ir": np.full(100, np.nan)}, "finite"),
            ({"sample_rate_hz": 1000.0}, "sample_rate_hz"),
            ({"bands_hz": (8000,), "sample_rate_hz": 16000.0}, "bands_hz"),
        ],
    )
    def test_invalid_input_names_the_parameter(self, kwargs: dict, message: str) -> None:
        arguments = {"ir": np.ones(1000), "sample_rate_hz": FS} | kwargs
        with pytest.raises(ValueError, match=message):
            bands.filter_octave_bands(arguments.pop("ir"), arguments.pop("sample_rate_hz"), **arguments)
