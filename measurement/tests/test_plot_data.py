"""The analysis hands the web page its plot data: decay curves with fit ranges, impulse response, frequency response."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference_cases import ReferenceCase

BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")


@pytest.fixture(scope="module")
async def analysed(app, tools, signal_48k) -> dict:
    signal, signal_id = signal_48k
    recording, _ = tools.recording_of(signal, ReferenceCase("plots", pnr_db=50.0, drift_ppm=40.0))
    job_id = await tools.new_job(app.client)
    await app.client.put(f"/v1/jobs/{job_id}/recordings/r.wav", json={"signal_id": signal_id})
    assert (
        await app.client.post(f"/v1/jobs/{job_id}/uploads/r.wav", content=tools.wav_bytes(recording, 44100))
    ).status_code == 200
    response = await app.client.post(f"/v1/jobs/{job_id}/analyze")
    assert response.status_code == 200
    return response.json()["results"][0]


async def test_decay_curves_carry_the_regression_behind_each_value(analysed) -> None:
    curves = analysed["plots"]["decay_curves"]
    assert set(curves) == {"broadband", *BANDS}
    for band in ("500", "1000", "2000"):
        curve = curves[band]
        time_s, level_db = np.array(curve["time_s"]), np.array(curve["level_db"])
        assert time_s.size == len(level_db) and 150 <= time_s.size <= 300
        assert np.all(np.diff(time_s) > 0) and level_db[0] == pytest.approx(0.0, abs=0.01)  # normalised to its start
        fit = curve["fits"]["t30"]
        # the fitted line is the value the table shows, and the curve lies on it over its range
        assert -60.0 / fit["slope_db_per_s"] == pytest.approx(analysed["bands"][band]["t30_s"], rel=1e-3)
        inside = (time_s >= fit["start_s"]) & (time_s <= fit["end_s"])
        line_db = fit["intercept_db"] + fit["slope_db_per_s"] * time_s[inside]
        assert np.max(np.abs(level_db[inside] - line_db)) < 2.0
        assert np.interp(fit["start_s"], time_s, level_db) == pytest.approx(-5.0, abs=0.5)
        assert np.interp(fit["end_s"], time_s, level_db) == pytest.approx(-35.0, abs=0.5)


async def test_impulse_response_and_frequency_response(analysed) -> None:
    ir = analysed["plots"]["impulse_response"]
    time_s = np.array(ir["time_s"])
    assert len(ir["min"]) == len(ir["max"]) == len(ir["level_db"]) == time_s.size
    assert np.all(np.diff(time_s) > 0)
    assert time_s[0] < -0.04 and time_s[-1] > 2.9  # the whole response: -50 ms to +3 s
    peak = int(np.argmax(ir["level_db"]))
    assert ir["level_db"][peak] == pytest.approx(0.0, abs=1e-6)
    assert abs(time_s[peak]) < 0.005  # the direct sound sits at time 0
    assert max(ir["max"]) == pytest.approx(1.0, abs=1e-6) or min(ir["min"]) == pytest.approx(-1.0, abs=1e-6)
    fr = analysed["plots"]["frequency_response"]
    freqs = np.array(fr["frequency_hz"])
    assert freqs[0] == pytest.approx(20.0) and 15000 < freqs[-1] <= 20000
    assert np.all(np.diff(freqs) > 0) and len(fr["level_db"]) == freqs.size
    assert max(fr["level_db"]) == pytest.approx(0.0, abs=1e-6)
    # the sweep covers 50 Hz-20 kHz: inside it the response stands far above what lies below it
    assert np.median(np.array(fr["level_db"])[(freqs > 200) & (freqs < 8000)]) > fr["level_db"][0] + 20


async def test_plot_data_stays_small(analysed) -> None:
    assert len(json.dumps(analysed["plots"])) < 80_000
