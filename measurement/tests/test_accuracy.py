"""Accuracy through the real service: synthetic rooms with known truth, recorded, uploaded as WAV, analysed.

Each case is played (the service's own 48 kHz signal, downloaded over HTTP) through a designed room,
delayed, recorded on a drifting 44.1 kHz clock with white noise, uploaded as a 16-bit WAV to the live
service (a uvicorn process) and analysed there. The truth is the design's (see
``measurement/tests/reference_cases.py``). A representative subset; ``bench/analysis.py`` runs the
full grid. Targets (issue 5): at 40 dB and up, bands 250 Hz-4 kHz: T30, T20, EDT within 5 %, C50, C80 and
DRR within 1 dB, STI within 0.03; 125 Hz and 8 kHz within 10 % and 1.5 dB; at 20 dB within 10 % or null.
The 20 dB rule is also checked on eight cases of the bench's grid (its worst ones) through the function the
service's process pool runs, without HTTP.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf
from reference_cases import ReferenceCase, design_room, simulate_recording

from sonalyze_acoustics.parameters import room_parameters
from sonalyze_measurement.analysis.audio_generator import render, resolve_params
from sonalyze_measurement.analysis.metrics import AnalysisTask, analyze_recording

pytestmark = pytest.mark.e2e

MID = ("250", "500", "1000", "2000", "4000")
EDGE = ("125", "8000")
TIMES = ("edt_s", "t20_s", "t30_s")
CLARITY = ("c50_db", "c80_db")

CASES = (
    ReferenceCase("T1.0 DRR-6 60dB 0ppm", t60_1k_s=1.0, drr_db=-6.0, pnr_db=60.0, drift_ppm=0.0, seed=11),
    ReferenceCase("T1.0 DRR+3 40dB +200ppm", t60_1k_s=1.0, drr_db=3.0, pnr_db=40.0, drift_ppm=200.0, seed=12),
    ReferenceCase("T2.4 DRR+3 40dB -200ppm", t60_1k_s=2.4, drr_db=3.0, pnr_db=40.0, drift_ppm=-200.0, seed=13),
    ReferenceCase("T0.35 DRR+3 40dB +50ppm", t60_1k_s=0.35, drr_db=3.0, pnr_db=40.0, drift_ppm=50.0, seed=14),
    ReferenceCase("T1.0 DRR-6 40dB -50ppm", t60_1k_s=1.0, drr_db=-6.0, pnr_db=40.0, drift_ppm=-50.0, seed=15),
    ReferenceCase("T1.0 DRR+3 20dB +50ppm", t60_1k_s=1.0, drr_db=3.0, pnr_db=20.0, drift_ppm=50.0, seed=16),
)
AT_40_DB_AND_UP = [case for case in CASES if case.pnr_db >= 40]
AT_20_DB = [case for case in CASES if case.pnr_db < 40]


@pytest.fixture(scope="module")
def measured(live_service) -> dict[str, SimpleNamespace]:
    """Every case uploaded to one job of the live service and analysed in one call."""
    with httpx.Client(base_url=live_service.url, timeout=120) as client:
        audio = client.get("/v1/measurement/audio", params={"sample_rate": 48000})
        signal, _ = sf.read(io.BytesIO(audio.content), dtype="float64")
        signal_id = audio.headers["x-signal-id"]
        job_id = client.post("/v1/jobs", json={"map": {}, "meta": {"test": "accuracy"}}).json()["job_id"]
        designs = {}
        for index, case in enumerate(CASES):
            design = design_room(case)
            designs[case.name] = design
            buffer = io.BytesIO()
            sf.write(
                buffer,
                simulate_recording(signal, 48000, design, case),
                case.recording_rate_hz,
                subtype="PCM_16",
                format="WAV",
            )
            name = f"case{index}.wav"
            client.put(
                f"/v1/jobs/{job_id}/recordings/{name}",
                json={"speaker_slot_id": f"s{index}", "mic_slot_id": "m1", "signal_id": signal_id},
            )
            response = client.post(
                f"/v1/jobs/{job_id}/uploads/{name}", content=buffer.getvalue(), headers={"content-type": "audio/wav"}
            )
            assert response.status_code == 200, response.text
        results = client.post(f"/v1/jobs/{job_id}/analyze").json()["results"]
    by_name = {item["upload_name"]: item for item in results}
    out = {}
    for index, case in enumerate(CASES):
        item = by_name[f"case{index}.wav"]
        assert item["status"] == "ok", item["error"]
        design = designs[case.name]
        clean = room_parameters(design.ir, 48000).as_dict()
        out[case.name] = SimpleNamespace(item=item, truth=design.truth, clean=clean, case=case)
    return out


def _band(result: dict, band: str) -> dict:
    return result["broadband"] if band == "broadband" else result["bands"][band]


def _relative_errors(m: SimpleNamespace, bands: tuple[str, ...], names: tuple[str, ...]) -> dict[str, float | None]:
    out = {}
    for band in bands:
        for name in names:
            value, truth = _band(m.item, band)[name], _band(m.truth, band)[name]
            out[f"{band}.{name}"] = None if value is None else (value - truth) / truth
    return out


def _level_errors(m: SimpleNamespace, bands: tuple[str, ...], names: tuple[str, ...]) -> dict[str, float | None]:
    out = {}
    for band in bands:
        for name in names:
            value, truth = _band(m.item, band)[name], _band(m.truth, band)[name]
            out[f"{band}.{name}"] = None if value is None else value - truth
    return out


def _over(errors: dict[str, float | None], limit: float) -> dict[str, float | None]:
    """The entries that are null or beyond ``limit`` (the failures, shown by the assertion)."""
    return {key: value for key, value in errors.items() if value is None or abs(value) > limit}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_drift_and_offset(measured, case) -> None:
    quality = measured[case.name].item["quality"]
    assert quality["drift_ppm"] == pytest.approx(case.drift_ppm, abs=2.0)
    assert quality["offset_s"] == pytest.approx(case.delay_s * (1 + case.drift_ppm * 1e-6) + 0.02, abs=0.001)


def _unexplained(m: SimpleNamespace, errors: dict[str, float | None], limit: float) -> dict[str, float | None]:
    """Errors beyond ``limit``, and nulls that come without a reason."""
    reasons = m.item["quality"]["null_reasons"]
    return {
        key: value for key, value in _over(errors, limit).items() if value is not None or f"bands.{key}" not in reasons
    }


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_reverberation_times_mid_bands_within_5_percent(measured, case) -> None:
    assert _over(_relative_errors(measured[case.name], MID, ("t20_s", "t30_s")), 0.05) == {}


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_edt_mid_bands_within_5_percent_or_refused(measured, case) -> None:
    """The metric code refuses EDT (null + reason) where a strong direct sound takes the first 10 dB at once."""
    m = measured[case.name]
    assert _unexplained(m, _relative_errors(m, MID, ("edt_s",)), 0.05) == {}


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_clarity_mid_bands_within_1_db(measured, case) -> None:
    assert _over(_level_errors(measured[case.name], MID, CLARITY), 1.0) == {}


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_drr_500_hz_to_4_khz_within_1_db(measured, case) -> None:
    assert _over(_level_errors(measured[case.name], ("500", "1000", "2000", "4000"), ("drr_db",)), 1.0) == {}


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_edge_bands_within_10_percent_and_1_5_db(measured, case) -> None:
    m = measured[case.name]
    assert _over(_relative_errors(m, EDGE, ("t20_s", "t30_s")), 0.10) == {}
    assert _unexplained(m, _relative_errors(m, EDGE, ("edt_s",)), 0.10) == {}
    assert _over(_level_errors(m, EDGE, CLARITY), 1.5) == {}
    assert _over(_level_errors(m, ("8000",), ("drr_db",)), 1.5) == {}


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_sti_within_0_03(measured, case) -> None:
    m = measured[case.name]
    assert m.item["broadband"]["sti"] == pytest.approx(m.truth["broadband"]["sti"], abs=0.03)


@pytest.mark.parametrize("case", AT_40_DB_AND_UP, ids=lambda c: c.name)
def test_drr_125_and_250_hz_within_targets(measured, case) -> None:
    """The sweep-limited direct sound rings longer than the direct window at low frequencies: corrected for."""
    m = measured[case.name]
    assert _over(_level_errors(m, ("250",), ("drr_db",)), 1.0) == {}
    assert _over(_level_errors(m, ("125",), ("drr_db",)), 1.5) == {}


@pytest.mark.parametrize("case", AT_20_DB, ids=lambda c: c.name)
def test_at_20_db_values_are_within_10_percent_or_null_with_a_reason(measured, case) -> None:
    m = measured[case.name]
    reasons = m.item["quality"]["null_reasons"]
    bands = ("125", "250", "500", "1000", "2000", "4000", "8000")
    wrong = {}
    for band in ("broadband", *bands):
        for name in (*TIMES, *CLARITY, "drr_db", "d50"):
            value, truth = _band(m.item, band)[name], _band(m.truth, band)[name]
            key = f"{band}.{name}" if band == "broadband" else f"bands.{band}.{name}"
            if value is None:
                if key not in reasons:
                    wrong[key] = "null without a reason"
            elif (name in TIMES and abs(value - truth) > 0.10 * truth) or (
                name not in TIMES and name != "d50" and abs(value - truth) > 1.5
            ):
                wrong[key] = value - truth
    assert wrong == {}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_measurement_path_adds_little_to_the_metric_code(measured, case) -> None:
    """Measured vs the same metric code on the clean designed IR: what signal, drift, noise and deconvolution add."""
    m = measured[case.name]
    limits = {"edt_s": 0.02, "t20_s": 0.02, "t30_s": 0.03, "c50_db": 0.3, "c80_db": 0.3, "drr_db": 0.3, "d50": 0.01}
    if case.pnr_db < 40:
        # at 20 dB the noise alone scatters the decay times: T20 at 250 Hz (INR ~32 dB) measured
        # +2.3 +- 2.4 % over 12 noise seeds, worst 6.6 %
        limits = {name: (3 if name.endswith("_s") else 2) * limit for name, limit in limits.items()}
    wrong = {}
    for band in ("broadband", "250", "500", "1000", "2000", "4000", "8000"):
        for name, limit in limits.items():
            value, clean = _band(m.item, band)[name], _band(m.clean, band)[name]
            if value is None or clean is None:
                continue
            error = (value - clean) / clean if name.endswith("_s") else value - clean
            if abs(error) > limit:
                wrong[f"{band}.{name}"] = round(error, 4)
    assert wrong == {}
    assert m.item["broadband"]["sti"] == pytest.approx(m.clean["broadband"]["sti"], abs=0.01)
    assert np.isfinite(m.item["quality"]["drift_ppm"])


# The 20 dB rule over the grid of bench/analysis.py (same names and seeds): the cases with the largest errors
# found there, through the function the service's process pool runs (16-bit WAV file in, results out).
# Seed 57 had a 500 Hz T20 14 % long (its noise floor taken for a still-decaying end, so no noise was
# subtracted); 74 and 88 showed the same misclassification at 500 Hz (16-17 %) when 1 s instead of 0.5 s of
# noise was kept after the broadband crossing; 60 had T20 +9 %, 12 EDT +8.5 %; the others cover short and
# long decays, both DRRs and the drift extremes. About 4 s for the eight.
GRID_AT_20_DB = (
    ReferenceCase("T0.35/DRR+3/20dB/+50ppm", t60_1k_s=0.35, drr_db=3.0, pnr_db=20.0, drift_ppm=50.0, seed=12),
    ReferenceCase("T0.35/DRR-6/20dB/-200ppm", t60_1k_s=0.35, drr_db=-6.0, pnr_db=20.0, drift_ppm=-200.0, seed=30),
    ReferenceCase("T1/DRR+3/20dB/+0ppm", t60_1k_s=1.0, drr_db=3.0, pnr_db=20.0, drift_ppm=0.0, seed=41),
    ReferenceCase("T1/DRR-6/20dB/+50ppm", t60_1k_s=1.0, drr_db=-6.0, pnr_db=20.0, drift_ppm=50.0, seed=57),
    ReferenceCase("T1/DRR-6/20dB/-200ppm", t60_1k_s=1.0, drr_db=-6.0, pnr_db=20.0, drift_ppm=-200.0, seed=60),
    ReferenceCase("T2.4/DRR+3/20dB/+200ppm", t60_1k_s=2.4, drr_db=3.0, pnr_db=20.0, drift_ppm=200.0, seed=74),
    ReferenceCase("T2.4/DRR+3/20dB/-200ppm", t60_1k_s=2.4, drr_db=3.0, pnr_db=20.0, drift_ppm=-200.0, seed=75),
    ReferenceCase("T2.4/DRR-6/20dB/-50ppm", t60_1k_s=2.4, drr_db=-6.0, pnr_db=20.0, drift_ppm=-50.0, seed=88),
)


@pytest.fixture(scope="module")
def reference_signal(tmp_path_factory) -> SimpleNamespace:
    """The service's 48 kHz signal, stored as the reference store stores it (16-bit WAV)."""
    params = resolve_params(48000)
    pcm16, timing = render(params)
    path = tmp_path_factory.mktemp("reference") / "reference.wav"
    sf.write(path, pcm16, 48000, subtype="PCM_16")
    return SimpleNamespace(
        samples=pcm16.astype(np.float64) / 32768.0, path=path, timing=timing.as_dict(), signal_id=params.signal_id
    )


def _violations_of_the_20_db_rule(item: dict, truth: dict) -> dict[str, object]:
    """Every value beyond 10 % (decay times) or 1.5 dB (levels), and every null without a reason."""
    reasons = item["quality"]["null_reasons"]
    wrong: dict[str, object] = {}
    for band in ("broadband", "125", "250", "500", "1000", "2000", "4000", "8000"):
        for name in ("edt_s", "t20_s", "t30_s", "rt60_s", "c50_db", "c80_db", "drr_db", "d50"):
            value, true = _band(item, band)[name], _band(truth, band)[name]
            key = f"{band}.{name}" if band == "broadband" else f"bands.{band}.{name}"
            if value is None:
                if not reasons.get(key):
                    wrong[key] = "null without a reason"
            elif name.endswith("_s") and abs(value - true) > 0.10 * true:
                wrong[key] = f"{100 * (value - true) / true:+.1f} %"
            elif name.endswith("_db") and abs(value - true) > 1.5:
                wrong[key] = f"{value - true:+.2f} dB"
            elif name == "d50" and abs(value - true) > 0.1:
                wrong[key] = f"{value - true:+.3f}"
    return wrong


@pytest.fixture(scope="module")
def grid_at_20_db(reference_signal, tmp_path_factory) -> dict[str, SimpleNamespace]:
    """Each case recorded to a 16-bit WAV and analysed by the function the process pool runs."""
    folder = tmp_path_factory.mktemp("grid20")
    out = {}
    for index, case in enumerate(GRID_AT_20_DB):
        design = design_room(case)
        path = folder / f"case{index}.wav"
        sf.write(
            path,
            simulate_recording(reference_signal.samples, 48000, design, case),
            case.recording_rate_hz,
            subtype="PCM_16",
        )
        task = AnalysisTask(
            "accuracy",
            path.name,
            str(path),
            str(reference_signal.path),
            reference_signal.timing,
            reference_signal.signal_id,
        )
        out[case.name] = SimpleNamespace(item=analyze_recording(task), truth=design.truth)
    return out


@pytest.mark.parametrize("case", GRID_AT_20_DB, ids=lambda c: c.name)
def test_grid_at_20_db_is_within_10_percent_or_null_with_a_reason(case, grid_at_20_db) -> None:
    m = grid_at_20_db[case.name]
    assert m.item["status"] == "ok", m.item["error"]
    assert _violations_of_the_20_db_rule(m.item, m.truth) == {}


def test_grid_at_20_db_still_reports_what_it_can_measure(grid_at_20_db) -> None:
    """The rule is not met by nulling everything: rooms up to T60 1 s keep mid-band T20 values (a 2.4 s decay
    at 20 dB has only 20-25 dB of range, rightly null everywhere)."""
    for case in GRID_AT_20_DB:
        if case.t60_1k_s <= 1.0:
            bands = grid_at_20_db[case.name].item["bands"]
            assert any(bands[band]["t20_s"] is not None for band in MID), case.name


def test_grid_at_20_db_reports_t20_in_nine_tenths_of_the_mid_bands(grid_at_20_db) -> None:
    """Issue 15: rooms with T <= 2 s at 20 dB peak-to-noise give T20 in at least 80 % of the 250 Hz-4 kHz bands
    (each within 10 %, by the test above). The noise-compensated curve is trusted down to its truncation point
    for T20 with a 2 dB margin (`T20_DECAY_MARGIN_DB`): 23 of 25 here, worst error 4.6 %; with the 5 dB margin T30
    keeps, 20 of 25.
    Asked: 90 %, so going back fails."""
    reported = total = 0
    for case in GRID_AT_20_DB:
        if case.t60_1k_s <= 2.0:
            bands = grid_at_20_db[case.name].item["bands"]
            reported += sum(bands[band]["t20_s"] is not None for band in MID)
            total += len(MID)
    assert reported >= 0.9 * total, (reported, total)
