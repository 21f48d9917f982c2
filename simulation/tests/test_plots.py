"""`plots: true` answers each pair's plot data, computed from the simulated response like a measurement's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


async def test_plots_only_when_asked(client: httpx.AsyncClient, example_response: dict[str, Any], spec_example) -> None:
    assert example_response["results"][0]["plots"] is None
    response = await client.post("/simulate", json={**spec_example, "plots": True})
    assert response.status_code == 200, response.text
    (pair,) = response.json()["results"]
    plots = pair["plots"]
    assert set(plots) == {"impulse_response", "frequency_response", "decay_curves"}
    fit = plots["decay_curves"]["1000"]["fits"]["t30"]
    assert -60.0 / fit["slope_db_per_s"] == pytest.approx(pair["bands"]["1000"]["t30_s"], rel=1e-3)
    # the same request, the same numbers: plots change nothing else
    assert pair["bands"] == example_response["results"][0]["bands"]
    ir = plots["impulse_response"]
    assert max(ir["level_db"]) == pytest.approx(0.0, abs=1e-6)
    # time 0 is the direct sound: nothing before it, and it stands out of the silence before it
    before = [level for t, level in zip(ir["time_s"], ir["level_db"], strict=True) if t < -0.001]
    around = [level for t, level in zip(ir["time_s"], ir["level_db"], strict=True) if abs(t) <= 0.001]
    assert max(before) < -40 and max(around) > -20


async def test_plots_must_be_a_flag(client: httpx.AsyncClient, spec_example) -> None:
    response = await client.post("/simulate", json={**spec_example, "plots": "lots"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_request"
