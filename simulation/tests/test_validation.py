"""Every way a request can be wrong gets a 4xx naming the problem; the cost guard says what to reduce."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Body = Callable[..., dict[str, Any]]


async def post_error(client: httpx.AsyncClient, body: Any, status: int) -> dict[str, Any]:
    response = await client.post("/simulate", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    return error


def polygon_body(vertices: list[list[float]], height_m: float = 2.5, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "room": {
            "type": "polygon",
            "vertices": vertices,
            "height_m": height_m,
            "default_material": {"absorption": 0.2},
        },
        "sources": [{"id": "s1", "position_m": [1.0, 1.0, 1.2]}],
        "microphones": [{"id": "m1", "position_m": [2.0, 1.5, 1.2]}],
        "sample_rate_hz": 16000,
    }
    body.update(fields)
    return body


L_SHAPE = [[0, 0], [6, 0], [6, 3], [3, 3], [3, 6], [0, 6]]


class TestPositions:
    async def test_source_outside_a_shoebox(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        error = await post_error(client, shoebox_body(sources=[("s1", (6.0, 1.0, 1.2))]), 400)
        assert "sources[0] (id 's1')" in error["message"] and "outside the room" in error["message"]
        assert error["field"] == "sources.0.position_m"

    async def test_microphone_above_the_ceiling(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        error = await post_error(client, shoebox_body(microphones=[("m1", (2.0, 2.0, 2.6))]), 400)
        assert error["field"] == "microphones.0.position_m"

    async def test_microphone_in_the_notch_of_an_l_shaped_room(self, client: httpx.AsyncClient) -> None:
        body = polygon_body(L_SHAPE, microphones=[{"id": "m1", "position_m": [4.5, 4.5, 1.2]}])
        error = await post_error(client, body, 400)
        assert "outside the room" in error["message"]

    async def test_position_on_a_wall(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        error = await post_error(client, shoebox_body(sources=[("s1", (0.01, 2.0, 1.2))]), 400)
        assert "from a surface" in error["message"]

    async def test_source_on_top_of_a_microphone(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body(sources=[("s1", (2.0, 2.0, 1.2))], microphones=[("m1", (2.0, 2.0, 1.25))])
        error = await post_error(client, body, 400)
        assert "apart" in error["message"]

    async def test_duplicate_ids(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body(microphones=[("m", (1.0, 1.0, 1.0)), ("m", (2.0, 2.0, 1.0))])
        error = await post_error(client, body, 422)
        assert "'m' appears twice" in error["message"]


class TestRoom:
    async def test_bow_tie_polygon_is_not_simple(self, client: httpx.AsyncClient) -> None:
        error = await post_error(client, polygon_body([[0, 0], [4, 4], [4, 0], [0, 4]]), 400)
        assert "simple polygon" in error["message"] and "wall 0" in error["message"]

    async def test_polygon_too_small(self, client: httpx.AsyncClient) -> None:
        error = await post_error(client, polygon_body([[0, 0], [0.9, 0], [0.9, 0.9], [0, 0.9]]), 400)
        assert "at least 1.0 m2" in error["message"]

    async def test_collinear_polygon_encloses_nothing(self, client: httpx.AsyncClient) -> None:
        error = await post_error(client, polygon_body([[0, 0], [2, 0], [4, 0]]), 400)
        assert error["field"] == "room.vertices"

    async def test_repeated_vertex(self, client: httpx.AsyncClient) -> None:
        error = await post_error(client, polygon_body([[0, 0], [4, 0], [4, 0], [4, 4], [0, 4]]), 400)
        assert "repeated vertices" in error["message"]

    async def test_too_few_vertices(self, client: httpx.AsyncClient) -> None:
        await post_error(client, polygon_body([[0, 0], [4, 0]]), 422)

    async def test_shoebox_dimension_too_small(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        error = await post_error(client, shoebox_body(dimensions_m=(5.0, 4.0, 0.5)), 400)
        assert "z = 0.5 m" in error["message"]

    async def test_polygon_height_out_of_range(self, client: httpx.AsyncClient) -> None:
        error = await post_error(client, polygon_body([[0, 0], [4, 0], [4, 4], [0, 4]], height_m=500.0), 400)
        assert error["field"] == "room.height_m"

    async def test_unknown_room_type(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body()
        body["room"]["type"] = "sphere"
        await post_error(client, body, 422)

    async def test_wall_override_beyond_the_last_wall(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body()
        body["room"]["surfaces"] = {"walls": {"4": {"absorption": 0.5}}}
        error = await post_error(client, body, 400)
        assert "walls 0 to 3" in error["message"]


class TestMaterials:
    @pytest.mark.parametrize(
        ("material", "fragment"),
        [
            ({"absorption": 1.2}, "absorption at 125 Hz is 1.2"),
            ({"absorption": -0.1}, "must lie in [0, 1]"),
            ({"absorption": 0.2, "scattering": 1.5}, "scattering at 125 Hz is 1.5"),
            ({"absorption": [0.1, 0.2, 1.3, 0.3, 0.3, 0.3]}, "absorption at 500 Hz is 1.3"),
            ({"absorption": {"125": 0.1, "250": 0.1, "500": 0.1, "1000": 2, "2000": 0.1, "4000": 0.1}}, "1000 Hz"),
            ({"absorption": [0.1, 0.2, 0.3]}, "one value per octave band"),
            ({"absorption": {"125": 0.1, "300": 0.2}}, "unknown band keys"),
            ({"name": "carpet", "absorption": 0.3}, "either 'name'"),
            ({}, "either 'name'"),
        ],
    )
    async def test_bad_coefficients(
        self, client: httpx.AsyncClient, shoebox_body: Body, material: dict[str, Any], fragment: str
    ) -> None:
        body = shoebox_body()
        body["room"]["default_material"] = material
        error = await post_error(client, body, 422)
        assert fragment in error["message"]

    async def test_unknown_material_lists_close_matches(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body()
        body["room"]["surfaces"] = {"floor": {"name": "carpt"}}
        error = await post_error(client, body, 400)
        assert "unknown material 'carpt'" in error["message"]
        assert "carpet" in error["close_matches"]
        assert error["field"] == "room.surfaces.floor.name"

    async def test_per_band_coefficients_are_used(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body(absorption=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35], method="ism", max_order=2)
        response = await client.post("/simulate", json=body)
        assert response.status_code == 200
        mean = response.json()["room"]["mean_absorption"]
        assert mean == {"125": 0.1, "250": 0.15, "500": 0.2, "1000": 0.25, "2000": 0.3, "4000": 0.35, "8000": 0.35}


class TestOptions:
    async def test_too_many_pairs(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        spots = [(x, y, 1.2) for x in (1.0, 2.0, 3.0) for y in (1.0, 2.0)]
        body = shoebox_body(
            sources=[(f"s{i}", p) for i, p in enumerate(spots)],
            microphones=[(f"m{i}", (p[0] + 0.5, p[1] + 0.5, 1.5)) for i, p in enumerate(spots)],
        )
        error = await post_error(client, body, 400)
        assert "36 pairs" in error["message"] and "at most 32" in error["message"]

    async def test_max_order_with_ray_tracing(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        error = await post_error(client, shoebox_body(method="ray_tracing", max_order=3), 400)
        assert error["field"] == "max_order"

    async def test_unknown_method(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        await post_error(client, shoebox_body(method="magic"), 422)

    @pytest.mark.parametrize("rate", [4000, 200000])
    async def test_sample_rate_out_of_range(self, client: httpx.AsyncClient, shoebox_body: Body, rate: int) -> None:
        error = await post_error(client, shoebox_body(sample_rate_hz=rate), 422)
        assert "sample_rate_hz" in error["message"]

    async def test_spec_name_sample_rate_is_accepted(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        body = shoebox_body(method="ism", max_order=2)
        body["sample_rate"] = body.pop("sample_rate_hz")
        response = await client.post("/simulate", json=body)
        assert response.json()["settings"]["sample_rate_hz"] == 16000

    async def test_unknown_field_is_refused(self, client: httpx.AsyncClient, shoebox_body: Body) -> None:
        await post_error(client, shoebox_body(max_ordr=3), 422)

    async def test_not_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/simulate", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"

    async def test_nan_position(self, client: httpx.AsyncClient) -> None:
        raw = (
            b'{"room": {"type": "shoebox", "dimensions_m": [5, 4, 2.5]}, "sources": [{"id": "s", "position_m": '
            b'[NaN, 1, 1]}], "microphones": [{"id": "m", "position_m": [2, 2, 1]}]}'
        )
        response = await client.post("/simulate", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422


class TestCostGuard:
    async def test_high_order_image_sources_in_a_polygon_are_refused(self, client: httpx.AsyncClient) -> None:
        decagon = [[5 + 4 * math.cos(k * math.pi / 5), 5 + 4 * math.sin(k * math.pi / 5)] for k in range(10)]
        body = polygon_body(decagon, method="ism", max_order=14)
        body["sources"][0]["position_m"] = [5.0, 4.0, 1.2]
        body["microphones"][0]["position_m"] = [5.5, 6.0, 1.2]
        error = await post_error(client, body, 400)
        assert "over the budget of 20 s" in error["message"]
        assert "reduce max_order (now 14)" in error["message"]
        assert error["estimated_cost_s"] > error["cost_budget_s"] == 20.0
        assert error["cost_breakdown"]["image_sources_s"] > 20.0

    async def test_too_many_rays_in_a_live_hall_are_refused(
        self, client: httpx.AsyncClient, shoebox_body: Body
    ) -> None:
        body = shoebox_body(
            dimensions_m=(40.0, 25.0, 15.0),
            absorption=0.03,
            sources=[("s1", (5.0, 5.0, 2.0))],
            microphones=[("m1", (30.0, 20.0, 2.0))],
            n_rays=1_000_000,
        )
        error = await post_error(client, body, 400)
        assert "reduce n_rays (now 1000000)" in error["message"]

    async def test_automatic_image_order_stays_within_the_budget(self, app_factory: Any, shoebox_body: Body) -> None:
        # a budget so small that the automatic order must come down, yet the request is served
        async with app_factory(simulation_pool_size=1, simulation_cost_budget_s=0.3) as (_, client):
            response = await client.post("/simulate", json=shoebox_body(absorption=0.05, method="ism"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["settings"]["estimated_cost_s"] <= 0.3
            assert body["settings"]["max_order"] < 50
            assert any("use method=hybrid" in note for note in body["notes"])
