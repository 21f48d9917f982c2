"""The gateway as a process: shutdown closes sockets with 1012 (reconnect), pings drop dead peers, no numpy."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex[:10]


async def silent_socket(ws_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Complete the WebSocket handshake by hand, then never read again and never answer a ping."""
    host_port, _, path = ws_url.removeprefix("ws://").partition("/")
    host, port = host_port.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


class TestShutdown:
    async def test_sockets_are_closed_with_1012_and_the_lobby_hears_it(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        running = kit.start_gateway(tmp_path, kit.backend_env(stubs))
        device = new_device()
        try:
            async with kit.open_socket(running, device) as identified, kit.open_socket(running) as anonymous:
                await kit.request(identified, "lobby.get", {}, "before")
                await asyncio.to_thread(running.suite.stop_service, "gateway")
                await asyncio.wait_for(identified.wait_closed(), 5)
                await asyncio.wait_for(anonymous.wait_closed(), 5)
                codes = (identified.close_code, anonymous.close_code)
        finally:
            running.suite.stop()
        assert codes == (1012, 1012)  # "service restart": reconnect, to another gateway
        events = [c["event"] for c in await stubs.calls("lobby", device)]
        assert events[-1] == "device.disconnected"


class TestPing:
    async def test_a_peer_that_stops_answering_pings_is_dropped(self, stubs: Any, kit: Any, tmp_path: Path) -> None:
        env = {**kit.backend_env(stubs), "UVICORN_WS_PING_INTERVAL": "0.3", "UVICORN_WS_PING_TIMEOUT": "0.3"}
        running = kit.start_gateway(tmp_path, env)
        ghost = new_device()
        try:
            async with kit.open_socket(running, new_device()) as alive:
                _, writer = await silent_socket(f"{running.ws_url}?device_id={ghost}")
                assert (await running.health())["connections"] == 2

                async def ghost_dropped() -> bool:
                    return (await running.health())["connections"] == 1

                await kit.wait_until(ghost_dropped, timeout_s=5)
                still = await kit.request(alive, "lobby.get", {}, "alive")  # answers pings, so it stays
                writer.close()
        finally:
            running.suite.stop()
        assert still["type"] == "response"
        events = [c["event"] for c in await stubs.calls("lobby", ghost)]
        assert events == ["device.connected", "device.disconnected"]


def test_gateway_does_not_import_numpy() -> None:
    code = "import sys, sonalyze_gateway.main as m; m.create_app(); print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_without_redis_url_the_gateway_does_not_import_redis() -> None:
    """The embedded default keeps today's in-process path: no Redis client loaded at all."""
    code = (
        "import sys, asyncio, sonalyze_gateway.main as m\n"
        "from asgi_lifespan import LifespanManager\n"
        "async def run():\n"
        "    async with LifespanManager(m.create_app(m.Settings(internal_port=0))):\n"
        "        pass\n"
        "asyncio.run(run()); print('redis' in sys.modules, 'numpy' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.strip().splitlines()[-1] == "False False", result.stderr[-2000:]
