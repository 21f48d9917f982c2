"""Two gateway processes on one real Redis backplane, in front of the stub backends.

Pushes and broadcasts across gateways, the device-identity rules across gateways (a device id live on
one is live for the other; credentials and revocations are shared), a killed gateway's devices, and
the drain (SIGTERM: refuse new sockets, close the open ones with 1012, exit). Each test run uses its
own key prefix, so tests never see each other's keys or channels. Needs Redis at ``TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/0``); skipped without it, except under CI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sonalyze_suite.launcher import Suite, SuiteConfig, check_redis

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNAUTHORIZED, DEVICE_IN_USE, REPLACED, SERVICE_RESTART = 4501, 4502, 4503, 1012


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex[:10]


def require_redis() -> None:
    if problem := check_redis(REDIS_URL):
        if os.environ.get("CI"):
            raise AssertionError(problem)
        pytest.skip(problem)


class Pair:
    """``gateway`` and ``gateway-2`` as processes on one backplane (a fresh key prefix)."""

    def __init__(self, suite: Suite, log_dir: Path) -> None:
        self.suite = suite
        self.log_dir = log_dir
        self.names = suite.config.gateway_names

    def ws_url(self, index: int) -> str:
        return self.suite.config.url(self.names[index]).replace("http://", "ws://") + "/ws"

    def internal_url(self, index: int) -> str:
        return self.suite.config.internal_url(self.names[index])

    def http_url(self, index: int) -> str:
        return self.suite.config.url(self.names[index])

    def process(self, index: int) -> Any:
        return self.suite.children[self.names[index]].process

    def log(self, index: int) -> str:
        return (self.log_dir / f"{self.names[index]}.log").read_text()


def start_pair(tmp_path: Path, env: dict[str, str], kit: Any) -> Pair:
    require_redis()
    config = SuiteConfig.on_free_ports(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        services=("gateway",),
        internal_auth_token=kit.token,
        gateway_replicas=2,
        redis_url=REDIS_URL,
        redis_key_prefix=f"test-{uuid.uuid4().hex[:8]}:",
        extra_env={"gateway": {"DEVICE_LIVENESS_TIMEOUT_S": "0.5", **env}},
    )
    suite = Suite(config, log_dir=tmp_path / "logs")
    suite.start(timeout_s=60)
    return Pair(suite, tmp_path / "logs")


@pytest.fixture(scope="module")
def pair(stubs: Any, kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    running = start_pair(tmp_path_factory.mktemp("pair"), kit.backend_env(stubs), kit)
    try:
        yield running
    finally:
        running.suite.stop()


def socket_on(pair: Pair, index: int, device_id: str, device_token: str | None = None) -> Any:
    from websockets.asyncio.client import connect

    query = f"?device_id={device_id}" + (f"&device_token={device_token}" if device_token else "")
    return connect(pair.ws_url(index) + query, open_timeout=5, close_timeout=2)


async def broadcast(pair: Pair, index: int, kit: Any, devices: list[str], event: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            pair.internal_url(index) + "/internal/broadcast",
            json={"device_ids": devices, "event": event, "data": {"n": 1}},
            headers={"X-Internal-Token": kit.token},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def refusal(ws: Any, kit: Any) -> tuple[dict[str, Any], int | None]:
    frame = await kit.recv_frame(ws)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return frame, ws.close_code


class TestPushesAcrossGateways:
    async def test_a_broadcast_on_either_gateway_reaches_devices_on_both_and_names_the_offline(
        self, pair: Pair, kit: Any
    ) -> None:
        on_a, on_b, ghost = new_device(), new_device(), new_device()
        async with socket_on(pair, 0, on_a) as ws_a, socket_on(pair, 1, on_b) as ws_b:
            await kit.identified(ws_a)
            await kit.identified(ws_b)
            results = []
            for index in (0, 1):
                results.append(await broadcast(pair, index, kit, [on_a, on_b, ghost], f"from.{index}"))
                frames = [await kit.recv_frame(ws_a), await kit.recv_frame(ws_b)]
                assert [f["event"] for f in frames] == [f"from.{index}"] * 2
                assert all(f["data"] == {"n": 1} for f in frames)
        for result in results:
            assert sorted(result["delivered"]) == sorted([on_a, on_b]) and result["offline"] == [ghost]
        async with httpx.AsyncClient() as client:
            health = [(await client.get(pair.http_url(i) + "/healthz")).json() for i in (0, 1)]
        assert health[0]["gateway_id"] != health[1]["gateway_id"]
        assert all(h["backplane"]["remote_pushes"] >= 1 and h["backplane"]["served_pushes"] >= 1 for h in health)

    async def test_many_pushes_to_a_device_on_the_other_gateway_arrive_in_order(self, pair: Pair, kit: Any) -> None:
        device = new_device()
        async with socket_on(pair, 1, device) as ws:
            await kit.identified(ws)
            for i in range(30):
                assert (await broadcast(pair, 0, kit, [device], f"step.{i}"))["delivered"] == [device]
            events = [(await kit.recv_frame(ws))["event"] for _ in range(30)]
        assert events == [f"step.{i}" for i in range(30)]

    async def test_a_device_that_left_is_offline_on_both_and_the_lobby_hears_it_a_moment_later(
        self, pair: Pair, kit: Any, stubs: Any
    ) -> None:
        device = new_device()
        async with socket_on(pair, 1, device) as ws:
            await kit.identified(ws)
        await asyncio.sleep(0.3)  # the release is written in the background
        assert (await broadcast(pair, 0, kit, [device], "gone"))["offline"] == [device]
        assert [c["event"] for c in await stubs.calls("lobby", device)] == ["device.connected"]
        await asyncio.sleep(1.2)  # not back anywhere within RELEASE_NOTICE_DELAY_S: it left
        assert [c["event"] for c in await stubs.calls("lobby", device)] == ["device.connected", "device.disconnected"]

    async def test_a_device_back_on_the_other_gateway_at_once_is_announced_once_in_order(
        self, pair: Pair, kit: Any, stubs: Any
    ) -> None:
        device = new_device()
        async with socket_on(pair, 1, device) as ws:
            await kit.identified(ws)
        async with socket_on(pair, 0, device) as back:  # the way a drained or dropped phone comes back
            await kit.identified(back)
            await asyncio.sleep(1.5)  # past the old gateway's notice delay
            heard = [c["event"] for c in await stubs.calls("lobby", device)]
        assert heard == ["device.connected", "device.disconnected", "device.connected"]


class TestConnectStorm:
    async def test_hundreds_of_devices_connecting_at_once_are_all_identified_on_both(
        self, pair: Pair, kit: Any
    ) -> None:
        devices = [new_device() for _ in range(300)]

        async def one(index: int, device: str) -> Any:
            ws = await socket_on(pair, index % 2, device)
            await kit.identified(ws, timeout_s=30)
            return ws

        sockets = await asyncio.gather(*(one(i, d) for i, d in enumerate(devices)))
        try:
            result = await broadcast(pair, 0, kit, devices, "storm")
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        assert sorted(result["delivered"]) == sorted(devices) and result["offline"] == []
        assert "identify failed" not in pair.log(0) + pair.log(1)


class TestIdentityAcrossGateways:
    async def test_a_device_live_on_one_gateway_is_in_use_on_the_other(self, pair: Pair, kit: Any) -> None:
        device = new_device()
        async with socket_on(pair, 0, device) as first:
            await kit.identified(first)
            async with socket_on(pair, 1, device) as second:  # no credential, like the phone app
                frame, code = await refusal(second, kit)
            still = await broadcast(pair, 1, kit, [device], "still.yours")
            pushed = await kit.recv_frame(first)
        assert frame["error"]["code"] == "device_in_use" and code == DEVICE_IN_USE
        assert still["delivered"] == [device] and pushed["event"] == "still.yours"

    async def test_the_credential_from_one_gateway_moves_the_device_to_the_other(
        self, pair: Pair, kit: Any, stubs: Any
    ) -> None:
        device = new_device()
        async with socket_on(pair, 0, device) as old:
            token = (await kit.identified(old))["device_token"]
            async with socket_on(pair, 1, device, token) as new:
                assert (await kit.identified(new))["device_id"] == device
                await asyncio.wait_for(old.wait_closed(), 5)
                pushed = await broadcast(pair, 0, kit, [device], "to.the.new.one")
                frame = await kit.recv_frame(new)
                await asyncio.sleep(0.5)  # notices are sent in the background
                heard = [c["event"] for c in await stubs.calls("lobby", device)]
        assert old.close_code == REPLACED
        assert pushed["delivered"] == [device] and frame["event"] == "to.the.new.one"
        # the new gateway tells the lobby the device went and came back (so it re-sends what it awaits);
        # the old one, seeing the device held elsewhere, says nothing
        assert heard == ["device.connected", "device.disconnected", "device.connected"]

    async def test_a_silent_socket_on_one_gateway_loses_its_id_to_a_claimant_on_the_other(
        self, pair: Pair, kit: Any
    ) -> None:
        device = new_device()
        async with socket_on(pair, 0, device) as lost:
            await kit.identified(lost)
            lost.transport.pause_reading()  # its network is gone: no pong comes back
            started_s = time.monotonic()
            async with socket_on(pair, 1, device) as back:
                identified = await kit.identified(back)
                waited_s = time.monotonic() - started_s
                pushed = await broadcast(pair, 0, kit, [device], "after.move")
                frame = await kit.recv_frame(back)
        assert identified["device_id"] == device and 0.4 <= waited_s <= 3.0
        assert pushed["delivered"] == [device] and frame["event"] == "after.move"

    async def test_a_revocation_on_one_gateway_voids_the_credential_on_both(self, pair: Pair, kit: Any) -> None:
        device = new_device()
        async with socket_on(pair, 0, device) as ws:
            token = (await kit.identified(ws))["device_token"]
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    pair.internal_url(1) + f"/internal/devices/{device}/revoke",
                    headers={"X-Internal-Token": kit.token},
                    timeout=5,
                )
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert response.json() == {"device_id": device, "revoked": True}
        assert ws.close_code == UNAUTHORIZED
        for index in (0, 1):
            async with socket_on(pair, index, device, token) as stale:
                frame, code = await refusal(stale, kit)
            assert frame["error"]["code"] == "unauthorized" and code == UNAUTHORIZED


@pytest.fixture(scope="module")
def token_pair(stubs: Any, kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    running = start_pair(tmp_path_factory.mktemp("token-pair"), {**kit.backend_env(stubs), "DEVICE_AUTH": "token"}, kit)
    try:
        yield running
    finally:
        running.suite.stop()


class TestTokenModeAcrossGateways:
    async def test_an_id_issued_on_one_gateway_needs_its_credential_on_the_other(
        self, token_pair: Pair, kit: Any
    ) -> None:
        device = new_device()
        async with socket_on(token_pair, 0, device) as first:
            token = (await kit.identified(first))["device_token"]
        async with socket_on(token_pair, 1, device) as impostor:  # offline now, but issued: no claim without it
            frame, code = await refusal(impostor, kit)
        async with socket_on(token_pair, 1, device, token) as back:
            identified = await kit.identified(back)
        assert frame["error"]["code"] == "unauthorized" and code == UNAUTHORIZED
        assert "has a credential" in frame["error"]["message"]
        assert identified["device_id"] == device and identified["device_auth"] == "token"


class TestAGatewayGoes:
    async def test_a_killed_gateway_devices_are_offline_and_free_to_claim_elsewhere(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        pair = start_pair(tmp_path, kit.backend_env(stubs), kit)
        device = new_device()
        try:
            ws = await socket_on(pair, 1, device)
            await kit.identified(ws)
            pair.process(1).kill()
            pair.process(1).wait(5)
            started_s = time.monotonic()
            result = await broadcast(pair, 0, kit, [device], "anyone.there")
            answered_s = time.monotonic() - started_s
            async with socket_on(pair, 0, device) as back:  # no credential: the old holder is gone
                identified = await kit.identified(back)
            ws.transport.abort()
        finally:
            pair.suite.stop()
        assert result == {"delivered": [], "offline": [device]} and answered_s < 0.5
        assert identified["device_id"] == device

    async def test_drain_refuses_new_sockets_closes_the_open_ones_with_1012_and_exits(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        pair = start_pair(tmp_path, kit.backend_env(stubs), kit)
        devices = [new_device() for _ in range(5)]
        try:
            sockets = [await socket_on(pair, 1, d) for d in devices]
            for ws in sockets:
                await kit.identified(ws)
            pair.process(1).send_signal(signal.SIGTERM)
            for ws in sockets:
                await asyncio.wait_for(ws.wait_closed(), 5)
            codes = {ws.close_code for ws in sockets}
            refused = None
            try:
                async with socket_on(pair, 1, new_device()):
                    pass
            except InvalidStatus as exc:  # while draining: 503, so a proxy tries another gateway
                refused = exc.response.status_code
            except OSError:  # it already stopped listening
                refused = "not listening"
            exit_code = await asyncio.to_thread(pair.process(1).wait, 10)
            after = await broadcast(pair, 0, kit, devices, "after.drain")
            async with socket_on(pair, 0, devices[0]) as moved:  # the phone reconnects elsewhere
                await kit.identified(moved)
                moved_push = await broadcast(pair, 0, kit, [devices[0]], "moved")
        finally:
            pair.suite.stop()
        assert codes == {SERVICE_RESTART}
        # uvicorn ends its orderly shutdown by raising the signal it caught again
        assert refused in (503, "not listening") and exit_code in (0, -signal.SIGTERM)
        assert after == {"delivered": [], "offline": devices}
        assert moved_push["delivered"] == [devices[0]]
        assert "drained: closed 5 sockets with 1012" in pair.log(1)
