"""The HTTP API through the app: the spec's example, the response, the WAV, the catalogues."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from sonalyze_acoustics.parameters import room_parameters

BAND_KEYS = ["125", "250", "500", "1000", "2000", "4000", "8000"]
METRICS = {"edt_s", "t20_s", "t30_s", "rt60_s", "c50_db", "c80_db", "d50", "drr_db"}


class TestSpecExample:
    async def test_answers_with_every_metric_for_the_pair(self, example_response: dict[str, Any]) -> None:
        (result,) = example_response["results"]
        assert (result["source_id"], result["microphone_id"]) == ("s1", "m1")
        assert set(result["broadband"]) == METRICS | {"sti"}
        assert list(result["bands"]) == BAND_KEYS
        assert all(set(values) == METRICS for values in result["bands"].values())
        assert result["distance_m"] == pytest.approx(3.0)

    async def test_default_sample_rate_gives_every_band_and_the_sti(self, example_response: dict[str, Any]) -> None:
        (result,) = example_response["results"]
        assert result["bands"]["8000"]["rt60_s"] is not None, result["null_reasons"]
        assert 0.0 < result["broadband"]["sti"] < 1.0, result["null_reasons"]

    async def test_defaults_are_reported(self, example_response: dict[str, Any]) -> None:
        settings = example_response["settings"]
        assert settings["method"] == "hybrid"
        # the hybrid's image sources would need order 12 to reach 70 ms (a sixth of the 0.42 s Eyring RT60)
        # after the direct sound here; the search budget of a 6-surface room stops them at 8 (the same rule
        # for shoebox and polygon)
        assert settings["max_order"] == 8
        assert settings["sample_rate_hz"] == 48000
        assert settings["air_absorption"] is True
        assert settings["n_rays"] >= 5000

    async def test_room_facts_and_classical_estimates(self, example_response: dict[str, Any]) -> None:
        room = example_response["room"]
        assert room["volume_m3"] == pytest.approx(50.0)
        assert room["surface_m2"] == pytest.approx(85.0)
        assert room["mean_absorption"] == dict.fromkeys(BAND_KEYS, 0.2)
        assert [s["name"] for s in room["surfaces"]] == ["wall_0", "wall_1", "wall_2", "wall_3", "floor", "ceiling"]
        for key in BAND_KEYS:
            assert 0 < room["eyring_rt60_s"][key] < room["sabine_rt60_s"][key]
        # Sabine at 500 Hz with air: 0.1611 * 50 / (85 * 0.2 + 4 * 0.0006 * 50)
        assert room["sabine_rt60_s"]["500"] == pytest.approx(0.1611 * 50 / (17.0 + 0.12), rel=1e-3)

    async def test_simulated_rt60_is_near_eyring(
        self, example_response: dict[str, Any], mid_rt60: Callable[[dict[str, Any]], float]
    ) -> None:
        eyring_s = example_response["room"]["eyring_rt60_s"]["1000"]
        assert mid_rt60(example_response["results"][0]) == pytest.approx(eyring_s, rel=0.25)

    async def test_reports_how_long_it_took(self, example_response: dict[str, Any]) -> None:
        timings = example_response["timings"]
        assert example_response["elapsed_s"] > 0
        assert timings["simulate_s"] > 0 and timings["metrics_s"] > 0
        assert timings["total_s"] >= timings["simulate_s"] + timings["metrics_s"]


class TestImpulseResponseWav:
    async def test_wav_is_the_response_the_metrics_came_from(
        self, client: httpx.AsyncClient, example_response: dict[str, Any]
    ) -> None:
        result = example_response["results"][0]
        response = await client.get(result["ir_url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        samples, rate_hz = sf.read(io.BytesIO(response.content), dtype="float64")
        info = sf.info(io.BytesIO(response.content))
        assert (rate_hz, info.channels, info.subtype) == (48000, 1, "FLOAT")
        assert samples.size / rate_hz == pytest.approx(result["ir_length_s"], abs=1e-3)
        # the direct sound of a 3 m path: 3 / 343 s plus the engine's 40-sample filter delay
        direct = result["quality"]["direct_index"]
        assert abs(direct - (round(3.0 / 343.0 * 48000) + 40)) <= 48
        recomputed = room_parameters(samples, rate_hz, direct_index=direct).as_dict()
        for key in ("rt60_s", "edt_s", "c80_db"):
            assert recomputed["broadband"][key] == pytest.approx(result["broadband"][key], rel=1e-3)

    async def test_pcm16_is_peak_normalised(self, client: httpx.AsyncClient, example_response: dict[str, Any]) -> None:
        response = await client.get(example_response["results"][0]["ir_url"] + "&format=pcm16")
        samples, _ = sf.read(io.BytesIO(response.content), dtype="float64")
        assert sf.info(io.BytesIO(response.content)).subtype == "PCM_16"
        assert 20 * np.log10(np.max(np.abs(samples))) == pytest.approx(-1.0, abs=0.05)

    async def test_pair_ids_may_be_omitted_when_there_is_one_pair(
        self, client: httpx.AsyncClient, example_response: dict[str, Any]
    ) -> None:
        response = await client.get(f"/simulate/{example_response['simulation_id']}/ir")
        assert response.status_code == 200

    async def test_unknown_simulation_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/simulate/0123456789abcdef/ir")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_unknown_pair_is_404_and_lists_the_pairs(
        self, client: httpx.AsyncClient, example_response: dict[str, Any]
    ) -> None:
        response = await client.get(f"/simulate/{example_response['simulation_id']}/ir?microphone_id=nope")
        assert response.status_code == 404
        assert "s1/m1" in response.json()["error"]["message"]

    async def test_several_pairs_need_ids(
        self, client: httpx.AsyncClient, shoebox_body: Callable[..., dict[str, Any]]
    ) -> None:
        body = shoebox_body(microphones=[("a", (1.0, 1.0, 1.0)), ("b", (4.0, 3.0, 1.5))], method="ism")
        simulated = (await client.post("/simulate", json=body)).json()
        ambiguous = await client.get(f"/simulate/{simulated['simulation_id']}/ir")
        assert ambiguous.status_code == 400
        chosen = await client.get(simulated["results"][1]["ir_url"])
        assert chosen.status_code == 200


class TestMaterialsEndpoint:
    async def test_lists_the_database(self, client: httpx.AsyncClient) -> None:
        body = (await client.get("/materials")).json()
        assert body["count"] == len(body["materials"]) >= 30
        first = body["materials"][0]
        assert set(first) >= {
            "name",
            "category",
            "absorption_bands",
            "scattering_bands",
            "absorption_source",
            "scattering_source",
        }
        assert list(first["absorption_bands"]) == BAND_KEYS

    async def test_app_picker_fields(self, client: httpx.AsyncClient) -> None:
        """Phone-app spec section 4: id, display_name and scalar absorption/scattering (500 Hz-1 kHz mean)."""
        for material in (await client.get("/materials")).json()["materials"]:
            assert material["id"] == material["name"] and isinstance(material["display_name"], str)
            assert material["display_name"]
            bands = material["absorption_bands"]
            assert material["absorption"] == pytest.approx((bands["500"] + bands["1000"]) / 2, abs=1e-4)
            assert isinstance(material["scattering"], float) and 0 <= material["scattering"] <= 1

    async def test_filters_by_category(self, client: httpx.AsyncClient) -> None:
        body = (await client.get("/materials", params={"category": "glazing"})).json()
        assert body["count"] >= 3
        assert {m["category"] for m in body["materials"]} == {"glazing"}

    async def test_a_listed_material_can_be_simulated_by_name(
        self, client: httpx.AsyncClient, shoebox_body: Callable[..., dict[str, Any]]
    ) -> None:
        body = shoebox_body(method="ism")
        body["room"]["default_material"] = {"name": "rough_concrete"}
        body["room"]["surfaces"] = {"floor": {"name": "carpet"}, "walls": {"2": {"name": "Curtains Velvet"}}}
        response = await client.post("/simulate", json=body)
        assert response.status_code == 200, response.text
        surfaces = {s["name"]: s for s in response.json()["room"]["surfaces"]}
        assert surfaces["floor"]["material"] == "carpet_tufted_9m"
        assert surfaces["wall_2"]["material"] == "curtains_velvet"
        assert surfaces["wall_0"]["absorption"]["4000"] == 0.07


class TestReferenceProfilesEndpoint:
    async def test_lists_the_standard_rooms(self, client: httpx.AsyncClient) -> None:
        body = (await client.get("/reference-profiles")).json()
        ids = {p["id"] for p in body["profiles"]}
        assert {"classroom", "office", "living_room", "lecture_hall", "concert_hall"} <= ids
        for profile in body["profiles"]:
            low, high = profile["target_rt60_s"]["min"], profile["target_rt60_s"]["max"]
            assert 0 < low < high and profile["guidance"]

    async def test_app_profile_fields(self, client: httpx.AsyncClient) -> None:
        """Phone-app spec section 4: id, display_name, notes and metrics with key/label/value/unit/min/max."""
        for profile in (await client.get("/reference-profiles")).json()["profiles"]:
            assert profile["display_name"] and isinstance(profile["notes"], str)
            (metric,) = profile["metrics"]
            assert set(metric) == {"key", "label", "value", "unit", "min_value", "max_value"}
            assert metric["key"] == "rt60" and metric["unit"] == "s"
            assert (metric["min_value"], metric["max_value"]) == (
                profile["target_rt60_s"]["min"],
                profile["target_rt60_s"]["max"],
            )
            assert metric["min_value"] < metric["value"] < metric["max_value"]

    async def test_one_profile_by_id_and_unknown_is_404(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/reference-profiles/office")).json()["id"] == "office"
        assert (await client.get("/reference-profiles/igloo")).status_code == 404

    @pytest.mark.parametrize(
        "profile_id", ["classroom", "office", "living_room", "lecture_hall", "concert_hall", "control_room"]
    )
    async def test_profile_request_runs_as_is_and_lands_near_its_target(
        self, client: httpx.AsyncClient, profile_id: str
    ) -> None:
        profile = (await client.get(f"/reference-profiles/{profile_id}")).json()
        response = await client.post("/simulate", json=profile["request"])
        assert response.status_code == 200, response.text
        body = response.json()
        low, high = profile["target_rt60_s"]["min"], profile["target_rt60_s"]["max"]
        eyring_mid_s = (body["room"]["eyring_rt60_s"]["500"] + body["room"]["eyring_rt60_s"]["1000"]) / 2
        assert low <= eyring_mid_s <= high
        simulated = [
            r["bands"][b]["rt60_s"] for r in body["results"] for b in ("500", "1000") if r["bands"][b]["rt60_s"]
        ]
        assert simulated, body["results"][0]["null_reasons"]
        # the simulation is not Eyring (the rooms are not diffuse), but it stays in the neighbourhood
        assert 0.7 * low <= float(np.median(simulated)) <= 1.4 * high


class TestHealth:
    async def test_reports_the_workers(self, client: httpx.AsyncClient) -> None:
        body = (await client.get("/health")).json()
        assert body["status"] == "ok"
        assert body["workers"]["size"] == 2


class TestDirectSoundOnly:
    async def test_a_huge_hall_at_order_0_is_answered_not_a_500(self, client: httpx.AsyncClient) -> None:
        """Issue 14 (found by bench/cost_guard.py): the response ends right after the direct sound, shorter
        than one Lundeby block, and the decay check failed on it."""
        body = {
            "room": {"type": "shoebox", "dimensions_m": [200.0, 160.0, 40.0]},
            "sources": [{"id": "s", "position_m": [60.0, 64.0, 1.5]}],
            "microphones": [{"id": "m", "position_m": [140.0, 96.0, 1.2]}],
            "method": "ism", "max_order": 0, "sample_rate_hz": 16000,
        }  # fmt: skip
        response = await client.post("/simulate", json=body)
        assert response.status_code == 200, response.text
