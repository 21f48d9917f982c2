"""STI per IEC 60268-16: the index from known MTFs, the corrections, and the MTF of known decays."""

from __future__ import annotations

import numpy as np
import pytest

from sonalyze_acoustics import sti

FS = 48000.0


class TestStiFromMti:
    def test_equal_mti_gives_that_value(self) -> None:
        """sum(alpha) - sum(beta) = 1, so equal MTIs give STI = MTI (the weights' normalisation)."""
        assert sum(sti.MALE_ALPHA) - sum(sti.MALE_BETA) == pytest.approx(1.0)
        assert sti.sti_from_mti(np.full(7, 0.6)) == pytest.approx(0.6)

    def test_mtf_of_one_half_is_zero_db_snr(self) -> None:
        result = sti.speech_transmission_index(np.full((7, 14), 0.5), masking=False, reception_threshold=False)
        assert result.sti == pytest.approx(0.5)

    def test_perfect_channel_is_one_without_level_corrections(self) -> None:
        result = sti.speech_transmission_index(np.ones((7, 14)), masking=False, reception_threshold=False)
        assert result.sti == pytest.approx(1.0)

    def test_reception_threshold_lowers_a_quiet_perfect_channel(self) -> None:
        """At 45 dB(A) the 125 Hz band is 47.9 dB against a 46 dB threshold: m' = 1 / (1 + 10**(-0.19))."""
        result = sti.speech_transmission_index(np.ones((7, 14)), speech_level_dba=45.0, masking=False)
        expected_125 = 1.0 / (1.0 + 10 ** ((46.0 - 47.9) / 10))
        snr_db = 10 * np.log10(expected_125 / (1 - expected_125))
        assert result.mtf[0, 0] == pytest.approx(expected_125, rel=1e-6)
        assert result.mti[0] == pytest.approx((snr_db + 15) / 30)
        assert result.sti < 1.0

    def test_default_level_leaves_a_perfect_channel_perfect(self) -> None:
        """At 60 dB(A) every band is at least 15 dB above threshold and masking, so the STI stays 1."""
        assert sti.speech_transmission_index(np.ones((7, 14))).sti == pytest.approx(1.0)

    def test_masking_slope_follows_the_standard_at_70_db(self) -> None:
        """amdB(L) = 0.5 L - 59.8 for 67 <= L < 100: the band below at 72.9 dB masks at 72.9 - 23.35 dB."""
        result = sti.speech_transmission_index(np.ones((7, 14)), speech_level_dba=70.0, reception_threshold=False)
        masker_db = 72.9 + 0.5 * 72.9 - 59.8
        expected = 10 ** (72.9 / 10) / (10 ** (72.9 / 10) + 10 ** (masker_db / 10))
        assert result.mtf[1, 0] == pytest.approx(expected, rel=1e-6)

    def test_ambient_noise_at_equal_level_halves_the_mtf(self) -> None:
        speech_db = 60.0 + np.asarray(sti.MALE_SPECTRUM_RE_DBA)
        result = sti.speech_transmission_index(
            np.ones((7, 14)), noise_levels_db=tuple(speech_db), masking=False, reception_threshold=False
        )
        np.testing.assert_allclose(result.mtf, 0.5)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"mtf": np.ones((6, 14))}, "mtf must have shape"),
            ({"mtf": np.full((7, 14), 1.5)}, "within"),
            ({"speech_level_dba": 200.0}, "speech_level_dba"),
            ({"noise_levels_db": (40.0,) * 6}, "noise_levels_db"),
        ],
    )
    def test_invalid_input_names_the_parameter(self, kwargs: dict, message: str) -> None:
        arguments = {"mtf": np.ones((7, 14))} | kwargs
        with pytest.raises(ValueError, match=message):
            sti.speech_transmission_index(arguments.pop("mtf"), **arguments)


class TestModulationTransferFunction:
    def test_exponential_decay_matches_the_analytic_mtf(self) -> None:
        """m(F) = 1 / sqrt(1 + (2 pi F T / 13.8)**2) for a pure exponential energy decay."""
        t60_s = 1.2
        t_s = np.arange(int(4 * FS)) / FS
        energy = np.exp(-13.8155 * t_s / t60_s)
        frequencies_hz = np.asarray(sti.MODULATION_FREQUENCIES_HZ)
        expected = 1 / np.sqrt(1 + (2 * np.pi * frequencies_hz * t60_s / 13.8155) ** 2)
        np.testing.assert_allclose(sti.modulation_transfer_function(energy, FS), expected, rtol=2e-3)

    def test_tail_compensation_restores_a_truncated_decay(self) -> None:
        t60_s = 2.0
        t_s = np.arange(int(0.5 * FS)) / FS
        decay_per_s = 13.8155 / t60_s
        energy = np.exp(-decay_per_s * t_s)
        tail_energy = float(np.exp(-decay_per_s * 0.5) * FS / decay_per_s)
        mtf = sti.modulation_transfer_function(energy, FS, tail_energy=tail_energy, tail_decay_per_s=decay_per_s)
        frequencies_hz = np.asarray(sti.MODULATION_FREQUENCIES_HZ)
        expected = 1 / np.sqrt(1 + (2 * np.pi * frequencies_hz / decay_per_s) ** 2)
        np.testing.assert_allclose(mtf, expected, rtol=2e-3)

    def test_impulse_has_unit_mtf(self) -> None:
        np.testing.assert_allclose(sti.modulation_transfer_function(np.array([1.0, 0.0, 0.0]), FS), 1.0)

    def test_invalid_tail_names_the_parameter(self) -> None:
        with pytest.raises(ValueError, match="tail_decay_per_s"):
            sti.modulation_transfer_function(np.ones(10), FS, tail_energy=1.0)
