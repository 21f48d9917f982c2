"""Device identity against the real gateway process: who may act as a device id, in both modes.

Scripted sockets try what an attacker would (a second socket for a live device id, forged, foreign
and malformed credentials, a lost credential in token mode) and what a phone does (reconnect after
losing its network, present its credential). Stub backends stand in for the services.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from sonalyze_gateway.device_tokens import DeviceTokens, generate_key

pytestmark = pytest.mark.e2e

UNAUTHORIZED, DEVICE_IN_USE, REPLACED = 4501, 4502, 4503


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex[:10]


async def refusal(ws: Any, kit: Any) -> tuple[dict[str, Any], int | None]:
    """The error frame a refused socket gets, and the close code that follows it."""
    frame = await kit.recv_frame(ws)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return frame, ws.close_code


async def broadcast(gateway: Any, kit: Any, device: str, event: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            gateway.internal_url + "/internal/broadcast",
            json={"device_ids": [device], "event": event, "data": {}},
            headers={"X-Internal-Token": kit.token},
            timeout=5,
        )
    return response.json()


@pytest.fixture(scope="module")
def token_gateway(stubs: Any, kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    running = kit.start_gateway(tmp_path_factory.mktemp("token"), {**kit.backend_env(stubs), "DEVICE_AUTH": "token"})
    try:
        yield running
    finally:
        running.suite.stop()


class TestClaimMode:
    async def test_a_second_socket_for_a_live_device_is_refused_and_the_first_keeps_working(
        self, gateway: Any, kit: Any
    ) -> None:
        admin = new_device()
        async with kit.open_socket(gateway, admin) as real:
            await kit.identified(real)
            async with kit.open_socket(gateway, admin) as intruder:
                frame, code = await refusal(intruder, kit)
            pushed = await broadcast(gateway, kit, admin, "lobby.updated")
            received = await kit.recv_frame(real)
            routed = await kit.request(real, "lobby.get", {}, "still-me")
        assert frame["type"] == "error" and frame["event"] == "identify"
        assert frame["error"]["code"] == "device_in_use"
        assert code == DEVICE_IN_USE
        assert pushed == {"delivered": [admin], "offline": []}
        assert received["event"] == "lobby.updated"
        assert routed["data"]["device_id"] == admin

    async def test_identify_message_for_a_live_device_is_refused_too(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as real, kit.open_socket(gateway) as intruder:
            await kit.identified(real)
            assert (await kit.recv_frame(intruder, notices=True))["event"] == "gateway.identify_required"
            frame = await kit.request(intruder, "identify", {"device_id": device}, "take-over")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(intruder.recv(), 5)
            assert (await kit.request(real, "lobby.get", {}, "x"))["type"] == "response"
        assert frame["error"]["code"] == "device_in_use" and frame["request_id"] == "take-over"
        assert intruder.close_code == DEVICE_IN_USE

    async def test_the_credential_replaces_the_old_socket_which_is_closed_with_a_clear_code(
        self, gateway: Any, kit: Any
    ) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as old:
            token = (await kit.identified(old))["device_token"]
            async with kit.open_socket(gateway, device, token) as new:
                again = await kit.identified(new)
                await asyncio.wait_for(old.wait_closed(), 5)
                pushed = await broadcast(gateway, kit, device, "to.the.new.one")
                frame = await kit.recv_frame(new)
        assert again["device_id"] == device
        assert (old.close_code, old.close_reason) == (REPLACED, "replaced by a newer connection of this device")
        assert pushed["delivered"] == [device] and frame["event"] == "to.the.new.one"

    @pytest.mark.parametrize("kind", ["another_device", "forged", "malformed"])
    async def test_a_bad_credential_is_unauthorized_and_closes(self, gateway: Any, kit: Any, kind: str) -> None:
        device, other = new_device(), new_device()
        async with kit.open_socket(gateway, other) as other_ws:
            other_token = (await kit.identified(other_ws))["device_token"]
            token = {
                "another_device": other_token,
                "forged": DeviceTokens(generate_key()).issue(device, 1),
                "malformed": "not-a-token",
            }[kind]
            async with kit.open_socket(gateway, device, token) as ws:
                frame, code = await refusal(ws, kit)
        assert frame["error"]["code"] == "unauthorized" and code == UNAUTHORIZED

    async def test_a_phone_whose_network_died_gets_its_id_back_within_the_liveness_window(
        self, gateway: Any, kit: Any
    ) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as lost:
            await kit.identified(lost)
            lost.transport.pause_reading()  # the network is gone: no pong will ever come back
            started_s = time.monotonic()
            async with kit.open_socket(gateway, device) as back:  # no credential, like the phone app
                await ws_send_early(back)
                identified = await kit.identified(back)
                waited_s = time.monotonic() - started_s
                early = await kit.recv_frame(back)
                pushed = await broadcast(gateway, kit, device, "after.reconnect")
                frame = await kit.recv_frame(back)
        assert identified["device_id"] == device
        assert 1.5 <= waited_s <= 4.0
        assert early["request_id"] == "sent-while-waiting" and early["type"] == "response"
        assert pushed["delivered"] == [device] and frame["event"] == "after.reconnect"
        log = gateway.log()
        assert "missed the liveness ping" in log

    async def test_anonymous_socket_is_told_to_identify(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway) as ws:
            frame = await kit.recv_frame(ws, notices=True)
        assert frame["type"] == "event" and frame["event"] == "gateway.identify_required"
        assert frame["data"]["device_auth"] == "claim" and "identify" in frame["data"]["message"]


async def ws_send_early(ws: Any) -> None:
    """A message sent before the claim is decided: answered once it is."""
    await ws.send('{"event": "lobby.get", "request_id": "sent-while-waiting", "data": {}}')


class TestTokenMode:
    async def test_first_claim_is_issued_a_credential_and_later_ones_need_it(
        self, token_gateway: Any, kit: Any
    ) -> None:
        device = new_device()
        async with kit.open_socket(token_gateway, device) as first:
            issued = await kit.identified(first)
        assert issued["device_auth"] == "token"
        async with kit.open_socket(token_gateway, device) as impostor:
            frame, code = await refusal(impostor, kit)
        assert frame["error"]["code"] == "unauthorized" and code == UNAUTHORIZED
        assert "has a credential" in frame["error"]["message"]
        async with kit.open_socket(token_gateway, device, issued["device_token"]) as back:
            assert (await kit.identified(back))["device_id"] == device
            assert (await kit.request(back, "lobby.get", {}, "r"))["type"] == "response"

    async def test_while_the_device_is_online_an_impostor_is_unauthorized(self, token_gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(token_gateway, device) as real:
            await kit.identified(real)
            async with kit.open_socket(token_gateway) as impostor:
                frame = await kit.request(impostor, "identify", {"device_id": device}, "i")
            assert (await kit.request(real, "lobby.get", {}, "still"))["type"] == "response"
        assert frame["error"]["code"] == "unauthorized"

    async def test_a_revoked_credential_is_unauthorized_and_the_id_may_be_claimed_again(
        self, token_gateway: Any, kit: Any
    ) -> None:
        device = new_device()
        async with kit.open_socket(token_gateway, device) as ws:
            old_token = (await kit.identified(ws))["device_token"]
            async with httpx.AsyncClient() as client:
                url = f"{token_gateway.internal_url}/internal/devices/{device}/revoke"
                refused = await client.post(url, timeout=5)
                revoked = await client.post(url, headers={"X-Internal-Token": kit.token}, timeout=5)
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert refused.status_code == 401
        assert revoked.json() == {"device_id": device, "revoked": True}
        assert ws.close_code == UNAUTHORIZED
        async with kit.open_socket(token_gateway, device, old_token) as stale:
            frame, _ = await refusal(stale, kit)
        assert frame["error"]["code"] == "unauthorized" and "revoked" in frame["error"]["message"]
        async with kit.open_socket(token_gateway, device) as fresh:
            assert (await kit.identified(fresh))["device_token"] != old_token

    async def test_issued_ids_and_credentials_outlive_a_gateway_restart(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        running = kit.start_gateway(tmp_path, {**kit.backend_env(stubs), "DEVICE_AUTH": "token"})
        device = new_device()
        try:
            async with kit.open_socket(running, device) as ws:
                token = (await kit.identified(ws))["device_token"]
            await asyncio.to_thread(running.suite.stop_service, "gateway")
            running.suite.start_service("gateway")
            await asyncio.to_thread(running.suite.wait_healthy, ["gateway"], 60)
            async with kit.open_socket(running, device) as impostor:
                frame, _ = await refusal(impostor, kit)
            async with kit.open_socket(running, device, token) as back:
                assert (await kit.identified(back))["device_id"] == device
        finally:
            running.suite.stop()
        assert frame["error"]["code"] == "unauthorized"


class TestInternalApi:
    @pytest.mark.parametrize("method", ["POST", "GET"])
    async def test_the_public_port_serves_no_internal_endpoint(self, gateway: Any, kit: Any, method: str) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws, httpx.AsyncClient() as client:
            await kit.identified(ws)
            response = await client.request(
                method,
                gateway.url + "/internal/broadcast",
                json={"device_ids": [device], "event": "measurement.stop_recording", "data": {}},
                headers={"X-Internal-Token": kit.token},
                timeout=5,
            )
            with pytest.raises(TimeoutError):
                await kit.recv_frame(ws, timeout_s=0.3)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

    @pytest.mark.parametrize("token", [None, "", "sonalyze_internal_token", "wrong"])
    async def test_the_internal_listener_refuses_any_other_token(self, gateway: Any, token: str | None) -> None:
        headers = {"X-Internal-Token": token} if token is not None else {}
        async with httpx.AsyncClient() as client:
            response = await client.post(
                gateway.internal_url + "/internal/broadcast",
                json={"device_ids": ["x"], "event": "x", "data": {}},
                headers=headers,
                timeout=5,
            )
        assert response.status_code == 401

    async def test_a_gateway_without_a_token_authenticates_nothing(self, down_gateway: Any) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                down_gateway.internal_url + "/internal/broadcast",
                json={"device_ids": ["x"], "event": "x", "data": {}},
                headers={"X-Internal-Token": ""},
                timeout=5,
            )
        assert response.status_code == 401


class TestCors:
    async def test_allowed_origin_gets_cors_headers_and_others_do_not(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        app_origin = "http://localhost:5000"
        env = {**kit.backend_env(stubs), "CORS_ALLOWED_ORIGINS": f"{app_origin}, https://app.example"}
        running = kit.start_gateway(tmp_path, env)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                url = running.url + "/v1/measurement/signal"
                preflight = await client.options(
                    url, headers={"Origin": app_origin, "Access-Control-Request-Method": "POST"}
                )
                simple = await client.get(url, headers={"Origin": app_origin})
                foreign = await client.get(url, headers={"Origin": "http://evil.example"})
        finally:
            running.suite.stop()
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == app_origin
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert simple.headers["access-control-allow-origin"] == app_origin
        assert "X-Audio-Hash" in simple.headers["access-control-expose-headers"]
        assert "access-control-allow-origin" not in foreign.headers

    async def test_without_the_setting_no_origin_is_allowed(self, gateway: Any) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(gateway.url + "/healthz", headers={"Origin": "http://localhost:5000"})
        assert "access-control-allow-origin" not in response.headers
