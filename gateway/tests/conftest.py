"""Real processes for the gateway's integration tests: stub backends and gateways on free ports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from sonalyze_suite.launcher import Suite, SuiteConfig, free_port

STUB_SCRIPT = Path(__file__).with_name("stub_backend.py")
TEST_TOKEN = "gateway-test-token"
BACKENDS = ("lobby", "measurement", "simulation")
FRAME_TIMEOUT_S = 5.0


@dataclass
class StubBackends:
    urls: dict[str, str]
    process: subprocess.Popen[bytes]

    async def calls(self, service: str, device_id: str | None = None) -> list[dict[str, Any]]:
        """The calls ``service`` received, a ``device.presence`` batch read as one notice per device
        (``device.connected`` / ``device.disconnected`` with empty data, ``batch`` its batch's size)."""
        async with httpx.AsyncClient() as client:
            calls = (await client.get(self.urls[service] + "/_calls", timeout=5)).json()
        return [c for c in unbatched(calls) if device_id is None or c.get("device_id") == device_id]

    async def presence_batches(self) -> list[list[dict[str, Any]]]:
        """The ``changes`` of every ``device.presence`` batch the lobby stub received, in order."""
        async with httpx.AsyncClient() as client:
            calls = (await client.get(self.urls["lobby"] + "/_calls", timeout=5)).json()
        return [c["data"]["changes"] for c in calls if c["event"] == "device.presence"]


def unbatched(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for call in calls:
        if call["event"] != "device.presence":
            yield call
            continue
        changes = call["data"]["changes"]
        for change in changes:
            event = "device.connected" if change["connected"] else "device.disconnected"
            yield {**call, "event": event, "device_id": change["device_id"], "data": {}, "batch": len(changes)}


@dataclass
class RunningGateway:
    suite: Suite
    log_path: Path

    @property
    def url(self) -> str:
        return self.suite.config.url("gateway")

    @property
    def internal_url(self) -> str:
        """The internal listener (``/internal/*``)."""
        return self.suite.config.gateway_internal_url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def pid(self) -> int:
        return self.suite.children["gateway"].process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def reset_peak_rss(self) -> None:
        """Start VmHWM afresh from the current RSS (Linux: ``5`` in ``clear_refs``)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_rss_bytes(self) -> int:
        """VmHWM: the highest resident set size the process has had so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return (await client.get(self.url + "/healthz", timeout=5)).json()


def start_gateway(tmp_path: Path, env: dict[str, str], token: str | None = TEST_TOKEN) -> RunningGateway:
    config = SuiteConfig.on_free_ports(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        services=("gateway",),
        internal_auth_token=token,
        extra_env={"gateway": env},
    )
    suite = Suite(config, log_dir=tmp_path / "logs")
    suite.start(timeout_s=60)
    return RunningGateway(suite, tmp_path / "logs" / "gateway.log")


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stub backend exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@pytest.fixture(scope="session")
def stubs() -> Iterator[StubBackends]:
    ports = {name: free_port() for name in BACKENDS}
    process = subprocess.Popen(
        [sys.executable, str(STUB_SCRIPT), "--token", TEST_TOKEN, *(f"{n}={p}" for n, p in ports.items())],
        stdin=subprocess.DEVNULL,
    )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for url in urls.values():
            wait_for_http(url + "/health", process)
        yield StubBackends(urls, process)
    finally:
        process.terminate()
        process.wait(10)


def backend_env(stubs: StubBackends) -> dict[str, str]:
    return {f"{name.upper()}_URL": url for name, url in stubs.urls.items()}


@pytest.fixture(scope="session")
def gateway(stubs: StubBackends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The gateway in front of the stubs: a 1 s backend timeout, the default limits."""
    running = start_gateway(tmp_path_factory.mktemp("gateway"), {**backend_env(stubs), "HTTP_TIMEOUT_SECONDS": "1.0"})
    try:
        yield running
    finally:
        running.suite.stop()


@pytest.fixture(scope="session")
def down_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose backends are all down, running without any internal token."""
    dead = {f"{name.upper()}_URL": f"http://127.0.0.1:{free_port()}" for name in BACKENDS}
    running = start_gateway(tmp_path_factory.mktemp("down"), {**dead, "HTTP_TIMEOUT_SECONDS": "1.0"}, token="")
    try:
        yield running
    finally:
        running.suite.stop()


GATEWAY_NOTICES = frozenset({"gateway.identified", "gateway.identify_required"})


async def recv_frame(
    ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S, *, notices: bool = False
) -> dict[str, Any]:
    """The next frame; the gateway's connection notices are skipped unless ``notices``."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if notices or not (frame.get("type") == "event" and frame.get("event") in GATEWAY_NOTICES):
            return frame


async def request(
    ws: ClientConnection, event: str, data: Any = None, request_id: Any = None, timeout_s: float = FRAME_TIMEOUT_S
) -> dict[str, Any]:
    """Send one message and return the response or error frame echoing its request id (pushes skipped)."""
    message: dict[str, Any] = {"event": event, "request_id": request_id}
    if data is not None:
        message["data"] = data
    await ws.send(orjson.dumps(message).decode())
    deadline = time.monotonic() + timeout_s
    while True:
        frame = await recv_frame(ws, max(0.01, deadline - time.monotonic()))
        if frame["type"] != "event" and frame.get("request_id") == request_id:
            return frame


def open_socket(gateway: RunningGateway, device_id: str | None = None, device_token: str | None = None) -> Any:
    """``async with open_socket(gw, "dev") as ws``: a real client, identified by query when given."""
    query = {k: v for k, v in (("device_id", device_id), ("device_token", device_token)) if v}
    url = gateway.ws_url + ("?" + urlencode(query) if query else "")
    return connect(url, open_timeout=5, close_timeout=2)


async def identified(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
    """The data of the socket's ``gateway.identified`` push (earlier frames skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = await recv_frame(ws, max(0.01, deadline - time.monotonic()), notices=True)
        if frame.get("event") == "gateway.identified":
            return frame["data"]


async def wait_until(predicate: Any, timeout_s: float = 5.0, interval_s: float = 0.05) -> None:
    """Poll an async predicate until it holds (for effects that happen in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


class Kit:
    """The helpers above as one fixture (test files cannot import conftest under importlib mode)."""

    recv_frame = staticmethod(recv_frame)
    request = staticmethod(request)
    open_socket = staticmethod(open_socket)
    identified = staticmethod(identified)
    wait_until = staticmethod(wait_until)
    start_gateway = staticmethod(start_gateway)
    backend_env = staticmethod(backend_env)
    token = TEST_TOKEN


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
