"""Pieces of the worker-side run that are pure numerics."""

from __future__ import annotations

import numpy as np
import pytest

from sonalyze_acoustics.parameters import OCTAVE_BANDS_HZ
from sonalyze_simulation.bands import BAND_CENTERS_HZ
from sonalyze_simulation.simulate import direct_index, trim_tail


def test_bands_are_the_shared_librarys() -> None:
    assert tuple(OCTAVE_BANDS_HZ) == BAND_CENTERS_HZ


class TestTrimTail:
    def test_cuts_where_the_remaining_energy_is_80_db_down(self) -> None:
        rate_hz = 8000
        t_s = np.arange(2 * rate_hz) / rate_hz
        rng = np.random.default_rng(1)
        # 60 dB per 0.5 s, then a round-off floor 200 dB below the start
        decay = rng.standard_normal(t_s.size) * 10 ** (-6 * t_s) + 1e-10 * rng.standard_normal(t_s.size)
        trimmed = trim_tail(decay)
        remaining_db = 10 * np.log10(np.sum(decay[trimmed.size :] ** 2) / np.sum(decay**2))
        assert remaining_db == pytest.approx(-80.0, abs=0.5)
        # 80 dB of a 120 dB/s decay is ~0.67 s
        assert trimmed.size / rate_hz == pytest.approx(80 / 120, abs=0.05)
        np.testing.assert_array_equal(trimmed, decay[: trimmed.size])

    def test_silence_is_left_alone(self) -> None:
        assert trim_tail(np.zeros(16)).size == 16


class TestDirectIndex:
    def test_travel_time_plus_the_engines_filter_delay(self) -> None:
        assert direct_index(3.43, 48000) == 480 + 40
