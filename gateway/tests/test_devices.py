"""The lobby's connected/disconnected notices (also across a socket replaced by its device), and ``/internal/broadcast``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex[:10]


async def broadcast(gateway: Any, body: Any, token: str | None) -> httpx.Response:
    headers = {"X-Internal-Token": token} if token is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.post(gateway.internal_url + "/internal/broadcast", json=body, headers=headers, timeout=5)


async def lifecycle_events(stubs: Any, device: str) -> list[str]:
    return [c["event"] for c in await stubs.calls("lobby", device) if c["event"].startswith("device.")]


class TestLifecycle:
    async def test_first_open_and_last_close_reach_the_lobby_once(self, gateway: Any, stubs: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as first:
            token = (await kit.identified(first))["device_token"]
            async with kit.open_socket(gateway) as second:
                # the device's second socket, with its credential, replaces the first: the device never left
                await kit.request(second, "identify", {"device_id": device, "device_token": token}, "i")
                await kit.request(second, "lobby.get", {}, "x")
                await asyncio.wait_for(first.wait_closed(), 5)
                await asyncio.sleep(0.3)
                assert await lifecycle_events(stubs, device) == ["device.connected"]

        async def both_seen() -> bool:
            return await lifecycle_events(stubs, device) == ["device.connected", "device.disconnected"]

        await kit.wait_until(both_seen)
        calls = [c for c in await stubs.calls("lobby", device) if c["event"].startswith("device.")]
        assert all(c["data"] == {} and c["token_ok"] for c in calls)

    async def test_lobby_down_does_not_hold_up_the_socket(self, down_gateway: Any, kit: Any) -> None:
        async with kit.open_socket(down_gateway) as ws:
            frame = await kit.request(ws, "identify", {"device_id": new_device()}, "i", timeout_s=1.0)
        assert frame["type"] == "response"


class TestBroadcast:
    async def test_push_reaches_each_online_device(self, gateway: Any, kit: Any) -> None:
        a, b, gone = new_device(), new_device(), new_device()
        async with kit.open_socket(gateway, a) as a1, kit.open_socket(gateway, b) as b1:
            await kit.identified(a1), await kit.identified(b1)
            body = {"device_ids": [a, b, gone], "event": "lobby.updated", "data": {"type": "joined", "n": 2}}
            response = await broadcast(gateway, body, kit.token)
            frames = [await kit.recv_frame(ws) for ws in (a1, b1)]
        assert response.status_code == 200
        assert response.json() == {"delivered": [a, b], "offline": [gone]}
        expected = {"type": "event", "event": "lobby.updated", "data": {"type": "joined", "n": 2}}
        assert frames == [expected] * 2

    async def test_push_reaches_a_socket_identified_by_message(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway) as ws:
            await kit.request(ws, "identify", {"device_id": device}, "i")
            response = await broadcast(gateway, {"device_ids": [device], "event": "ping.me"}, kit.token)
            frame = await kit.recv_frame(ws)
        assert response.json()["delivered"] == [device]
        assert frame == {"type": "event", "event": "ping.me", "data": {}}

    @pytest.mark.parametrize("token", [None, "wrong-token", ""])
    async def test_without_the_right_token_is_401(self, gateway: Any, kit: Any, token: str | None) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws:
            response = await broadcast(gateway, {"device_ids": [device], "event": "x", "data": {}}, token)
            with pytest.raises(TimeoutError):
                await kit.recv_frame(ws, timeout_s=0.3)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_bad_body_is_422_bad_request(self, gateway: Any, kit: Any) -> None:
        response = await broadcast(gateway, {"device_ids": "not-a-list", "event": ""}, kit.token)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"

    async def test_closed_sockets_count_as_offline(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device):
            pass

        async def offline() -> bool:
            response = await broadcast(gateway, {"device_ids": [device], "event": "x"}, kit.token)
            return response.json() == {"delivered": [], "offline": [device]}

        await kit.wait_until(offline)
