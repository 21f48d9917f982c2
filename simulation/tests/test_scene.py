"""The phone app's scene (phone-app spec section 5) as ``room_model``: conversion and real simulations."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from sonalyze_simulation.scene import default_positions

# a 5 x 4 m room, centred on the origin as the app draws it, walls listed in mixed directions
APP_SCENE: dict[str, Any] = {
    "rooms": [
        {
            "dimensions": {"width": 5.0, "depth": 4.0, "height": 2.6},
            "walls": [
                {"start": {"x": -2.5, "z": -2.0}, "end": {"x": 2.5, "z": -2.0}},
                {"start": {"x": 2.5, "z": -2.0}, "end": {"x": 2.5, "z": 2.0}},
                {"start": {"x": -2.5, "z": 2.0}, "end": {"x": 2.5, "z": 2.0}},
                {"start": {"x": -2.5, "z": 2.0}, "end": {"x": -2.5, "z": -2.0}},
            ],
            "materials": {
                "wall": {"material_id": "plasterboard", "absorption": 0.08, "scattering": 0.1},
                "floor": {"material_id": "linoleum_on_concrete", "absorption": 0.03, "scattering": 0.1},
                "ceiling": {"id": "app_ceiling", "absorption": 0.1, "scattering": 0.1},
            },
            "furniture": [
                {
                    "id": "f1",
                    "type": "sofa",
                    "position": {"x": 0.0, "y": 0.0, "z": 1.4},
                    "rotation": 0,
                    "dimensions": {"width": 2.0, "depth": 0.9, "height": 0.8},
                },
                {
                    "id": "f2",
                    "type": "table",
                    "position": {"x": 0.0, "y": 0.0, "z": 0.0},
                    "rotation": 0,
                    "dimensions": {"width": 1.2, "depth": 0.8, "height": 0.75},
                },
            ],
        }
    ],
}


def _with(**changes: Any) -> dict[str, Any]:
    scene = copy.deepcopy(APP_SCENE)
    scene.update(changes)
    return scene


class TestConversion:
    async def test_scene_simulates_with_default_placements(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/simulate", json={"room_model": APP_SCENE, "method": "ism", "max_order": 8})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["room"]["type"] == "polygon"
        assert body["room"]["volume_m3"] == pytest.approx(5 * 4 * 2.6)
        (result,) = body["results"]
        assert (result["source_id"], result["microphone_id"]) == ("source_1", "microphone_1")
        assert result["distance_m"] > 1.5
        surfaces = {s["name"]: s for s in body["room"]["surfaces"]}
        assert surfaces["wall_0"]["material"] == "plasterboard"
        # the sofa and the table add absorption to the linoleum floor, mostly at mid and high frequencies
        assert surfaces["floor"]["absorption"]["1000"] > 0.1 > 0.03
        assert surfaces["ceiling"]["absorption"]["1000"] == 0.1

    async def test_furniture_shortens_the_reverberation(self, client: httpx.AsyncClient) -> None:
        empty = copy.deepcopy(APP_SCENE)
        empty["rooms"][0]["furniture"] = []
        furnished = (await client.post("/simulate", json={"room_model": APP_SCENE})).json()
        bare = (await client.post("/simulate", json={"room_model": empty})).json()
        assert furnished["room"]["eyring_rt60_s"]["1000"] < 0.8 * bare["room"]["eyring_rt60_s"]["1000"]

    async def test_scene_sources_and_microphones_are_used(self, client: httpx.AsyncClient) -> None:
        scene = _with(
            loudspeakers=[{"id": "spk", "position": {"x": -1.5, "y": 1.0, "z": 0.0}}],
            mics=[
                {"id": "m1", "position": {"x": 1.5, "y": 1.2, "z": 1.0}},
                {"id": "m2", "position": {"x": 1.0, "y": 1.2, "z": -1.0}},
            ],
        )
        body = (await client.post("/simulate", json={"room_model": scene, "method": "ism", "max_order": 3})).json()
        pairs = {(r["source_id"], r["microphone_id"]): r for r in body["results"]}
        assert set(pairs) == {("spk", "m1"), ("spk", "m2")}
        assert pairs[("spk", "m1")]["distance_m"] == pytest.approx((3.0**2 + 1.0**2 + 0.2**2) ** 0.5, abs=1e-3)

    async def test_a_room_from_dimensions_only(self, client: httpx.AsyncClient) -> None:
        scene = {"rooms": [{"dimensions": {"width": 6, "depth": 3, "height": 3}}]}
        body = (await client.post("/simulate", json={"room_model": scene, "method": "ism", "max_order": 3})).json()
        assert body["room"]["floor_area_m2"] == pytest.approx(18.0)

    async def test_a_job_map_holding_the_scene(self, client: httpx.AsyncClient) -> None:
        """The measured-versus-simulated comparison: the job's map sent as is."""
        response = await client.post("/simulate", json={"map": APP_SCENE, "method": "ism", "max_order": 3})
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        ("scene", "needle"),
        [
            ({"rooms": []}, "at least one room"),
            ({"rooms": [{"walls": [{"start": {"x": 0, "z": 0}, "end": {"x": 3, "z": 0}}]}]}, "at least 3 walls"),
            (
                {
                    "rooms": [
                        {
                            "walls": [
                                {"start": {"x": 0, "z": 0}, "end": {"x": 3, "z": 0}},
                                {"start": {"x": 3, "z": 0}, "end": {"x": 3, "z": 3}},
                                {"start": {"x": 5, "z": 5}, "end": {"x": 6, "z": 6}},
                            ]
                        }
                    ]
                },
                "do not close",
            ),
            ({"rooms": [{"materials": {}}]}, "makes no room"),
            ({"rooms": [{"dimensions": {"width": "big", "depth": 3}}]}, "width"),
            ("a string", "scene object"),
        ],
    )
    async def test_a_scene_that_makes_no_room_is_400(self, client: httpx.AsyncClient, scene: Any, needle: str) -> None:
        response = await client.post("/simulate", json={"room_model": scene})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"
        assert needle in response.json()["error"]["message"]

    async def test_a_position_outside_the_room_is_named(self, client: httpx.AsyncClient) -> None:
        scene = _with(sources=[{"id": "s", "position": {"x": 9.0, "y": 1.0, "z": 0.0}}])
        response = await client.post("/simulate", json={"room_model": scene})
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


def test_default_positions_stay_inside_an_l_shape() -> None:
    vertices = [[0, 0], [8, 0], [8, 2], [2, 2], [2, 6], [0, 6]]
    source, microphone = default_positions(vertices)
    for x, y in (source, microphone):
        in_bottom = 0 < x < 8 and 0 < y < 2
        in_left = 0 < x < 2 and 0 < y < 6
        assert in_bottom or in_left
    assert abs(source[0] - microphone[0]) + abs(source[1] - microphone[1]) > 1.0
