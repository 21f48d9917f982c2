"""``POST /gateway/handle``: the ``simulation.*`` events the gateway forwards from WebSocket clients."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

TOKEN = "test-internal-token"  # the conftest's settings use this token


async def handle(client: httpx.AsyncClient, event: str, data: Any, token: str = TOKEN) -> httpx.Response:
    body = {"event": event, "request_id": "r1", "device_id": "phone-1", "data": data}
    return await client.post("/gateway/handle", json=body, headers={"X-Internal-Token": token})


class TestSimulationRun:
    async def test_spec_example_over_the_event(self, client: httpx.AsyncClient, spec_example: dict[str, Any]) -> None:
        response = await handle(client, "simulation.run", spec_example)
        assert response.status_code == 200
        data = response.json()["data"]
        (result,) = data["results"]
        assert any(row["rt60_s"] is not None for row in [result["broadband"], *result["bands"].values()])
        # WebSocket clients fetch the IR through the gateway's proxy
        assert result["ir_url"].startswith(f"/v1/simulation/simulate/{data['simulation_id']}/ir?")

    async def test_the_apps_map_room_shape(self, client: httpx.AsyncClient) -> None:
        data = {
            "map": {"room": {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}},
            "sources": [{"id": "s1", "position_m": [2.5, 0.5, 1.2]}],
            "microphones": [{"id": "m1", "position_m": [2.5, 3.5, 1.2]}],
            "sample_rate_hz": 16000,
        }
        response = await handle(client, "simulation.run", data)
        assert response.json()["data"]["room"]["type"] == "polygon"

    async def test_invalid_data_is_an_error_body(self, client: httpx.AsyncClient, spec_example: dict[str, Any]) -> None:
        spec_example["room"]["default_material"] = {"absorption": 1.5}
        response = await handle(client, "simulation.run", spec_example)
        assert response.status_code == 200
        error = response.json()["error"]
        assert error["code"] == "bad_request"
        assert "absorption at 125 Hz is 1.5" in error["message"]

    async def test_domain_error_is_an_error_body(self, client: httpx.AsyncClient, spec_example: dict[str, Any]) -> None:
        spec_example["sources"][0]["position_m"] = [9.0, 0.5, 1.2]
        error = (await handle(client, "simulation.run", spec_example)).json()["error"]
        assert error["code"] == "bad_request" and "outside the room" in error["message"]


class TestCatalogueEvents:
    @pytest.mark.parametrize(
        ("event", "key"), [("simulation.materials", "materials"), ("simulation.reference_profiles", "profiles")]
    )
    async def test_lists(self, client: httpx.AsyncClient, event: str, key: str) -> None:
        data = (await handle(client, event, {})).json()["data"]
        assert data["count"] == len(data[key]) >= 5


class TestTransport:
    async def test_wrong_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await handle(client, "simulation.materials", {}, token="nope")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_unknown_event(self, client: httpx.AsyncClient) -> None:
        error = (await handle(client, "simulation.teleport", {})).json()["error"]
        assert error["code"] == "unknown_event"


def test_events_are_served_in_front_of_every_middleware() -> None:
    from sonalyze_protocol.handlers import GatewayHandleFastPath
    from sonalyze_simulation.main import create_app
    from sonalyze_simulation.settings import Settings

    app = create_app(Settings(internal_auth_token=TOKEN, log_level="WARNING"))
    assert app.user_middleware[0].cls is GatewayHandleFastPath
