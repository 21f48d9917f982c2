"""room_parameters against synthetic impulse responses with known truth, and the contract's shape."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sonalyze_acoustics.parameters import (
    OCTAVE_BANDS_HZ,
    BandParameters,
    RoomParameters,
    find_direct_sound,
    room_parameters,
)

TIME_FIELDS = ("edt_s", "t20_s", "t30_s")
LEVEL_FIELDS = ("c50_db", "c80_db", "drr_db")
MID_BANDS = ("250", "500", "1000", "2000", "4000")
EDGE_BANDS = ("125", "8000")
REFERENCE_ROOMS = ("medium", "dry", "live", "flat_close")


def _bands_of(parameters: RoomParameters) -> dict[str, BandParameters]:
    return {"broadband": parameters.broadband} | {str(band): parameters.bands[band] for band in OCTAVE_BANDS_HZ}


def _errors(parameters: RoomParameters, truth: dict[str, dict[str, float]]) -> dict[tuple[str, str], float | None]:
    errors: dict[tuple[str, str], float | None] = {}
    for key, band in _bands_of(parameters).items():
        for name in TIME_FIELDS:
            value = getattr(band, name)
            errors[(key, name)] = None if value is None else value / truth[key][name] - 1.0
        for name in LEVEL_FIELDS:
            value = getattr(band, name)
            errors[(key, name)] = None if value is None else value - truth[key][name]
    return errors


class TestAccuracy:
    """Targets of issue 5 (relative error for times, dB for levels), seeds 0-2 of every reference room.

    The truth is that of the clean components (``SyntheticIr.truth``); STI within 0.03 of it."""

    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize("room", REFERENCE_ROOMS)
    @pytest.mark.parametrize("inr_db", [60.0, 40.0])
    def test_values_meet_the_targets(self, make_ir, room: str, inr_db: float, seed: int) -> None:
        case = make_ir(room, inr_db=inr_db, seed=seed)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        failures = []
        for (key, name), error in _errors(parameters, case.truth).items():
            mid = key in MID_BANDS or key == "broadband"
            limit = (0.05 if mid else 0.10) if name in TIME_FIELDS else (1.0 if mid else 1.5)
            # At 60 dB every value must be there; at 40 dB all but T30 in the bands held to the tight limits.
            required = inr_db >= 60 or (mid and name != "t30_s")
            if error is None:
                if required:
                    failures.append(f"{key}.{name} is None: {_bands_of(parameters)[key].null_reasons.get(name)}")
            elif abs(error) > limit:
                failures.append(f"{key}.{name} error {error:+.3f} > {limit}")
        assert not failures, failures
        assert parameters.sti == pytest.approx(case.sti, abs=0.03)

    @pytest.mark.parametrize("room", REFERENCE_ROOMS)
    def test_t30_is_reported_at_40_db_in_the_middle_bands(self, make_ir, room: str) -> None:
        case = make_ir(room, inr_db=40.0, seed=0)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        reported = [band for band in (500, 1000, 2000, 4000) if parameters.bands[band].t30_s is not None]
        assert len(reported) >= 3, {band: parameters.bands[band].null_reasons for band in (500, 1000, 2000, 4000)}

    @pytest.mark.parametrize("room", REFERENCE_ROOMS)
    def test_at_20_db_values_are_close_or_null_with_a_reason(self, make_ir, room: str) -> None:
        case = make_ir(room, inr_db=20.0, seed=0)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        for (key, name), error in _errors(parameters, case.truth).items():
            band = _bands_of(parameters)[key]
            if error is None:
                assert band.null_reasons.get(name), f"{key}.{name} is None without a reason"
            else:
                assert abs(error) <= (0.10 if name in TIME_FIELDS else 1.5), f"{key}.{name} error {error:+.3f}"
        if parameters.sti is not None:
            assert parameters.sti == pytest.approx(case.sti, abs=0.03)

    def test_sti_matches_the_analytic_mtf_of_the_design(self, make_ir) -> None:
        """The brief's truth: m(F) from the analytic exponential decay (plus direct sound), IEC corrections."""
        case = make_ir("medium", inr_db=40.0)
        assert room_parameters(case.ir, case.sample_rate_hz).sti == pytest.approx(case.expected_sti, abs=0.03)

    def test_low_bands_of_a_phone_speaker_are_flagged_not_wrong(self, make_ir) -> None:
        """25 dB less INR at 125 and 250 Hz: those bands lose T30/T20 (with reasons), the rest stays right."""
        case = make_ir("medium", inr_db=40.0, band_inr_offset_db=(-25.0, -25.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        for band in (125, 250):
            low = parameters.bands[band]
            assert low.inr_db is not None and low.inr_db < 20
            for name in ("t20_s", "t30_s", "rt60_s"):
                assert getattr(low, name) is None
                assert "decay range" in low.null_reasons[name] or "usable" in low.null_reasons[name]
        assert parameters.bands[1000].rt60_s == pytest.approx(case.truth["1000"]["t30_s"], rel=0.05)


class TestNoiseExcitation:
    def test_gaussian_band_noise_decays_are_measured_without_bias(self, make_ir) -> None:
        """Band-filtered Gaussian noise: one realisation scatters (EDT by 10-40 % at low bands, the statistics of
        a short decay), but over 4 rooms x 3 seeds the mean T20/T30 error against the design stays small."""
        errors: dict[str, list[float]] = {"t20_s": [], "t30_s": []}
        for room in REFERENCE_ROOMS:
            for seed in range(3):
                case = make_ir(room, inr_db=60.0, seed=seed, excitation="noise")
                parameters = room_parameters(case.ir, case.sample_rate_hz)
                for band in (500, 1000, 2000, 4000):
                    for name in errors:
                        value = getattr(parameters.bands[band], name)
                        assert value is not None, parameters.bands[band].null_reasons
                        errors[name].append(value / case.expected[str(band)][name] - 1)
        for name, values in errors.items():
            assert abs(np.mean(values)) < 0.02, (name, np.mean(values))


class TestDirectSound:
    def test_first_arrival_wins_over_a_stronger_reflection(self) -> None:
        ir = np.zeros(48000)
        ir[1000] = 0.5
        ir[1240] = -0.8  # 5 ms later, 4 dB stronger
        ir[1300:] = np.random.default_rng(0).standard_normal(46700) * 1e-3 * np.exp(-np.arange(46700) / 4000)
        found = find_direct_sound(ir, 48000.0)
        assert found.onset_index == 1000
        assert found.peak_index == 1000

    def test_noise_before_the_direct_sound_is_ignored(self) -> None:
        rng = np.random.default_rng(1)
        ir = rng.standard_normal(48000) * 1e-3
        ir[5000] = 1.0
        assert find_direct_sound(ir, 48000.0).onset_index == 5000


class TestSweepLimitedDirectSound:
    """A response measured with a 50 Hz-20 kHz sweep: its direct sound is the deconvolution mask's pulse."""

    @staticmethod
    def _band_limited(ir: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        from sonalyze_acoustics.deconvolution import band_mask

        n_fft = 2 * ir.size
        freqs_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
        return np.fft.irfft(np.fft.rfft(ir, n_fft) * band_mask(freqs_hz, 50.0, 20000.0), n_fft)[: ir.size]

    @pytest.mark.parametrize("room", ["medium", "flat_close"])
    def test_drr_of_the_low_bands_is_corrected_for_the_pulse(self, make_ir, room: str) -> None:
        case = make_ir(room, inr_db=60.0, seed=0)
        measured = self._band_limited(case.ir, case.sample_rate_hz)
        corrected = room_parameters(measured, case.sample_rate_hz, band_limits_hz=(50.0, 20000.0))
        plain = room_parameters(measured, case.sample_rate_hz)
        for band in (125, 250, 500, 1000):
            truth = case.truth[str(band)]["drr_db"]
            assert corrected.bands[band].drr_db == pytest.approx(truth, abs=0.4), band
        # without the correction the window misses the pulse's low-frequency part
        assert plain.bands[125].drr_db < case.truth["125"]["drr_db"] - 1.0
        # everything but DRR is unchanged
        assert corrected.bands[125].c80_db == plain.bands[125].c80_db
        assert corrected.bands[1000].rt60_s == plain.bands[1000].rt60_s

    @pytest.mark.parametrize("limits", [(0.0, 20000.0), (500.0, 100.0), (50.0, 30000.0), (float("nan"), 1000.0)])
    def test_invalid_band_limits_name_the_parameter(self, make_ir, limits: tuple[float, float]) -> None:
        case = make_ir("dry", seed=0)
        with pytest.raises(ValueError, match="band_limits_hz"):
            room_parameters(case.ir, case.sample_rate_hz, band_limits_hz=limits)


class TestContract:
    def test_as_dict_has_the_agreed_shape_and_is_strict_json(self, make_ir) -> None:
        case = make_ir("medium", inr_db=30.0)
        result = room_parameters(case.ir, case.sample_rate_hz).as_dict()
        assert set(result) == {"broadband", "bands", "null_reasons", "quality"}
        band_fields = {"edt_s", "t20_s", "t30_s", "rt60_s", "c50_db", "c80_db", "d50", "drr_db"}
        assert set(result["broadband"]) == band_fields | {"sti"}
        assert list(result["bands"]) == [str(band) for band in OCTAVE_BANDS_HZ]
        for values in result["bands"].values():
            assert set(values) == band_fields
        groups = [("broadband", result["broadband"]), *((f"bands.{b}", v) for b, v in result["bands"].items())]
        for key, values in groups:
            for name, value in values.items():
                if value is None:
                    assert result["null_reasons"][f"{key}.{name}"]
        assert set(result["quality"]["inr_db"]) == {"broadband", *(str(band) for band in OCTAVE_BANDS_HZ)}
        assert result["quality"]["direct_index"] == case.direct_index
        assert result["quality"]["sti_assumptions"]["speech_level_dba"] == 60.0
        json.dumps(result, allow_nan=False)

    def test_rt60_is_t30_when_clear_of_the_noise_else_t20(self, make_ir) -> None:
        clean = room_parameters(*_ir_and_rate(make_ir("medium", inr_db=60.0)))
        assert clean.bands[1000].rt60_s == clean.bands[1000].t30_s
        noisy = room_parameters(*_ir_and_rate(make_ir("medium", inr_db=33.0)))
        band = noisy.bands[1000]
        assert band.t30_s is None and band.rt60_s == band.t20_s
        assert "T30 needs" in band.null_reasons["t30_s"]

    def test_noise_free_simulated_response_is_analysed(self, make_ir) -> None:
        case = make_ir("dry", inr_db=None)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        assert parameters.bands[1000].t30_s == pytest.approx(case.truth["1000"]["t30_s"], rel=0.05)
        assert all(math.isfinite(band.inr_db) for band in _bands_of(parameters).values())

    def test_truncated_simulated_response_keeps_its_decay_times(self, make_ir) -> None:
        """Image-source responses stop before the decay ends: 0.6 s of a 0.8 s decay, no noise."""
        case = make_ir("medium", inr_db=None, duration_s=0.65)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        for band in (1000, 2000, 4000):
            assert parameters.bands[band].rt60_s == pytest.approx(case.expected[str(band)]["t30_s"], rel=0.05)
            assert parameters.bands[band].c80_db == pytest.approx(case.truth[str(band)]["c80_db"], abs=1.0)

    def test_direct_index_hint_and_detection_agree(self, make_ir) -> None:
        case = make_ir("medium", inr_db=40.0)
        found = find_direct_sound(case.ir, case.sample_rate_hz)
        assert found.onset_index == case.direct_index
        hinted = room_parameters(case.ir, case.sample_rate_hz, direct_index=case.direct_index + 20)
        assert hinted.direct_index == case.direct_index

    @pytest.mark.parametrize("sample_rate_hz", [44100.0, 96000.0])
    def test_other_sample_rates_give_the_same_values(self, make_ir, sample_rate_hz: float) -> None:
        case = make_ir("medium", inr_db=60.0, sample_rate_hz=sample_rate_hz)
        parameters = room_parameters(case.ir, sample_rate_hz)
        for band in (500, 1000, 4000):
            assert parameters.bands[band].t30_s == pytest.approx(case.truth[str(band)]["t30_s"], rel=0.05)
            assert parameters.bands[band].c80_db == pytest.approx(case.truth[str(band)]["c80_db"], abs=1.0)
        assert parameters.sti == pytest.approx(case.sti, abs=0.03)

    def test_16_khz_response_has_no_8_khz_band_and_no_sti(self, make_ir) -> None:
        case = make_ir("medium", inr_db=50.0)
        decimated = case.ir[::3]
        parameters = room_parameters(decimated, 16000.0)
        assert parameters.bands[8000].t30_s is None
        assert "8000 Hz band" in parameters.bands[8000].null_reasons["t30_s"]
        assert parameters.sti is None and "8000 Hz" in parameters.sti_null_reason
        assert parameters.bands[1000].edt_s is not None

    def test_pure_noise_gives_nulls_with_reasons(self) -> None:
        noise = np.random.default_rng(0).standard_normal(48000)
        result = room_parameters(noise, 48000.0).as_dict()
        json.dumps(result, allow_nan=False)
        assert result["broadband"]["t30_s"] is None
        assert result["null_reasons"]["broadband.t30_s"]

    @pytest.mark.parametrize(
        ("ir", "sample_rate_hz", "kwargs", "message"),
        [
            (np.zeros((2, 48000)), 48000.0, {}, "ir must be 1-D"),
            (np.zeros(48000), 48000.0, {}, "all zeros"),
            (np.ones(100), 48000.0, {}, "at least 0.05 s"),
            (np.ones(48000), 100.0, {}, "sample_rate_hz"),
            (np.ones(48000), 48000.0, {"direct_index": 48000}, "direct_index"),
            (np.full(48000, np.inf), 48000.0, {}, "finite"),
        ],
    )
    def test_invalid_input_names_the_parameter(self, ir, sample_rate_hz, kwargs, message) -> None:
        with pytest.raises(ValueError, match=message):
            room_parameters(ir, sample_rate_hz, **kwargs)


def _ir_and_rate(case) -> tuple[np.ndarray, float]:
    return case.ir, case.sample_rate_hz


class TestDirectSoundOnsetRule:
    def test_onset_is_where_the_peak_minus_20_db_is_first_reached(self) -> None:
        ir = np.zeros(4800)
        ir[1000:1004] = [0.05, 0.2, 1.0, 0.3]
        direct = find_direct_sound(ir, 48000.0)
        assert direct.peak_index == 1002
        assert direct.onset_index == 1001

    def test_weaker_direct_sound_before_a_louder_reflection(self) -> None:
        ir = np.zeros(9600)
        ir[2000] = 0.5
        ir[2000 + int(0.004 * 48000)] = 1.0
        direct = find_direct_sound(ir, 48000.0)
        assert direct.onset_index == 2000

    def test_noise_before_the_direct_sound_is_not_taken(self) -> None:
        rng = np.random.default_rng(2)
        ir = rng.normal(0, 0.02, 9600)  # -34 dB noise: peaks cross -20 dB of the direct sound
        ir[4000] = 1.0
        direct = find_direct_sound(ir, 48000.0)
        assert direct.onset_index == 4000

    def test_all_zero_is_refused(self) -> None:
        with pytest.raises(ValueError, match="zeros"):
            find_direct_sound(np.zeros(100), 48000.0)


class TestLateEnergyUnderTheNoise:
    """Issue 15's living room: a short, dry room with a strong direct sound at a band INR just above 25 dB.

    Its late energy (after 80 ms, 25-45 dB under the total) lies under the noise; before the rule C80 came out
    5-13 dB wrong at 4 and 8 kHz with no flag. Now every clarity value at 1-8 kHz is within 1 dB of the clean
    truth or null with a reason that names the metric and the band. (At 500 Hz C50 scatters by +-1.0 dB at this
    INR with or without the rule: the band filter's smearing of a +15 dB direct sound, not the late part.)
    """

    T60_S = (0.3, 0.25, 0.2, 0.2, 0.18, 0.15, 0.12)

    @pytest.mark.parametrize("seed", [0, 1])
    def test_clarity_is_right_or_null_naming_metric_and_band(self, seed: int) -> None:
        from sonalyze_acoustics.synthetic import synthetic_ir

        case = synthetic_ir(self.T60_S, 15.0, 48000.0, np.random.default_rng(seed), inr_db=26.0)
        parameters = room_parameters(case.ir, case.sample_rate_hz)
        inrs = [parameters.bands[band].inr_db for band in OCTAVE_BANDS_HZ[2:]]
        assert all(25.0 <= inr <= 28.0 for inr in inrs), inrs  # just above the 25 dB rule, as in the issue
        nulled = 0
        for band in OCTAVE_BANDS_HZ[3:]:
            measured = parameters.bands[band]
            for name, label in (("c50_db", "C50"), ("c80_db", "C80"), ("drr_db", "DRR")):
                value = getattr(measured, name)
                if value is None:
                    nulled += 1
                    reason = measured.null_reasons[name]
                    assert reason.startswith(f"{label} at {band} Hz: "), reason
                    assert "noise" in reason, reason
                else:
                    assert abs(value - case.truth[str(band)][name]) <= 1.0, (band, name, value)
        assert nulled >= 4  # C80 (late part 35 dB down) cannot be had here in any band

    def test_every_null_reason_names_metric_and_band(self) -> None:
        from sonalyze_acoustics.synthetic import synthetic_ir

        case = synthetic_ir((2.0,) * 7, 0.0, 48000.0, np.random.default_rng(3), inr_db=15.0)
        result = room_parameters(case.ir, case.sample_rate_hz).as_dict()
        assert result["null_reasons"]
        labels = {"edt_s": "EDT", "t20_s": "T20", "t30_s": "T30", "rt60_s": "RT60", "c50_db": "C50",
                  "c80_db": "C80", "d50": "D50", "drr_db": "DRR", "sti": "STI"}  # fmt: skip
        for key, reason in result["null_reasons"].items():
            where, name = key.rsplit(".", 1)
            expected = f"{labels[name]} broadband: " if where == "broadband" else f"{labels[name]} at {where[6:]} Hz: "
            assert reason.startswith(expected), (key, reason)
