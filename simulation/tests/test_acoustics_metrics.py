"""Sabine and Eyring against hand-computed values and their known limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonalyze_simulation.acoustics.metrics import (
    eyring_rt60_s,
    mean_absorption,
    mean_free_path_m,
    reverberation_estimates,
    sabine_rt60_s,
)

# 5 x 4 x 2.5 m shoebox: V = 50 m3, S = 85 m2
AREAS_M2 = [12.5, 10.0, 12.5, 10.0, 20.0, 20.0]


class TestSabine:
    def test_uniform_absorption_matches_hand_computation(self) -> None:
        rt60 = sabine_rt60_s(50.0, AREAS_M2, np.full((6, 1), 0.2))
        expected = 24 * math.log(10) / 343.0 * 50.0 / (85.0 * 0.2)
        np.testing.assert_allclose(rt60, [expected], rtol=1e-12)
        assert rt60[0] == pytest.approx(0.4738, abs=1e-3)

    def test_air_absorption_adds_4mV(self) -> None:
        rt60 = sabine_rt60_s(50.0, AREAS_M2, np.full((6, 1), 0.2), [0.01])
        expected = 24 * math.log(10) / 343.0 * 50.0 / (85.0 * 0.2 + 4 * 0.01 * 50.0)
        np.testing.assert_allclose(rt60, [expected], rtol=1e-12)

    def test_no_absorption_is_infinite(self) -> None:
        assert np.isinf(sabine_rt60_s(50.0, AREAS_M2, np.zeros((6, 1)))[0])


class TestEyring:
    def test_uniform_absorption_matches_hand_computation(self) -> None:
        rt60 = eyring_rt60_s(50.0, AREAS_M2, np.full((6, 1), 0.2))
        expected = 24 * math.log(10) / 343.0 * 50.0 / (-85.0 * math.log(1 - 0.2))
        np.testing.assert_allclose(rt60, [expected], rtol=1e-12)

    def test_approaches_sabine_for_small_absorption(self) -> None:
        alpha = np.full((6, 1), 0.01)
        assert eyring_rt60_s(50.0, AREAS_M2, alpha)[0] == pytest.approx(
            sabine_rt60_s(50.0, AREAS_M2, alpha)[0], rel=0.01
        )

    def test_is_shorter_than_sabine(self) -> None:
        alpha = np.full((6, 1), 0.5)
        assert eyring_rt60_s(50.0, AREAS_M2, alpha)[0] < sabine_rt60_s(50.0, AREAS_M2, alpha)[0]

    def test_total_absorption_gives_zero(self) -> None:
        assert eyring_rt60_s(50.0, AREAS_M2, np.ones((6, 1)))[0] == 0.0

    def test_mixed_surfaces_use_area_weighted_mean(self) -> None:
        alpha = np.array([[0.1], [0.1], [0.1], [0.1], [0.6], [0.02]])
        mean = (40.0 * 0.1 + 20.0 * 0.6 + 20.0 * 0.02) / 85.0 + 5.0 * 0.1 / 85.0
        assert mean_absorption(AREAS_M2, alpha)[0] == pytest.approx(mean)
        expected = 24 * math.log(10) / 343.0 * 50.0 / (-85.0 * math.log(1 - mean))
        assert eyring_rt60_s(50.0, AREAS_M2, alpha)[0] == pytest.approx(expected)


class TestInputs:
    def test_per_band_shapes(self) -> None:
        estimates = reverberation_estimates(50.0, AREAS_M2, np.full((6, 7), 0.3), np.zeros(7))
        assert estimates.sabine_rt60_s.shape == estimates.eyring_rt60_s.shape == (7,)

    @pytest.mark.parametrize(
        ("volume_m3", "areas", "alpha", "message"),
        [
            (0.0, AREAS_M2, np.full((6, 1), 0.2), "volume_m3"),
            (50.0, AREAS_M2, np.full((5, 1), 0.2), "absorption"),
            (50.0, AREAS_M2, np.full((6, 1), 1.2), "absorption"),
            (50.0, [-1.0, *AREAS_M2[1:]], np.full((6, 1), 0.2), "areas_m2"),
        ],
    )
    def test_bad_inputs_name_the_parameter(
        self, volume_m3: float, areas: list[float], alpha: np.ndarray, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            sabine_rt60_s(volume_m3, areas, alpha)

    def test_mean_free_path(self) -> None:
        assert mean_free_path_m(50.0, 85.0) == pytest.approx(200.0 / 85.0)
