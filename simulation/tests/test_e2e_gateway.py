"""Through the real gateway: the spec's curl example over HTTP, the IR download, ``simulation.run`` over /ws.

The gateway and the simulation run as uvicorn processes on free ports (``sonalyze_suite``).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from sonalyze_suite.launcher import Suite, SuiteConfig

pytestmark = pytest.mark.e2e

TOKEN = "e2e-simulation-token"


@pytest.fixture(scope="module")
def suite_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteConfig]:
    root = tmp_path_factory.mktemp("simulation_e2e")
    config = SuiteConfig.on_free_ports(
        data_dir=root / "data",
        state_dir=root / "state",
        services=("simulation", "gateway"),
        internal_auth_token=TOKEN,
        log_level="WARNING",
    )
    suite = Suite(config, log_dir=root / "logs")
    suite.start(timeout_s=90)
    try:
        yield config
    finally:
        suite.stop()


@pytest.fixture(scope="module")
def gateway_url(suite_config: SuiteConfig) -> str:
    return suite_config.url("gateway")


def curl_example_body() -> str:
    """The ``-d`` payload of the spec's "Run Simulation" example, character for character."""
    return """{
    "room": {
      "type": "shoebox",
      "dimensions_m": [5.0, 4.0, 2.5],
      "default_material": {"absorption": 0.2}
    },
    "sources": [{"id": "s1", "position_m": [2.5, 0.5, 1.2]}],
    "microphones": [{"id": "m1", "position_m": [2.5, 3.5, 1.2]}]
  }"""


async def test_curl_example_through_the_gateway(gateway_url: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
        response = await client.post(
            "/v1/simulation/simulate", content=curl_example_body(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        (result,) = body["results"]
        assert any(row["rt60_s"] is not None for row in [result["broadband"], *result["bands"].values()])
        assert set(result["bands"]) == {"125", "250", "500", "1000", "2000", "4000", "8000"}
        assert body["room"]["eyring_rt60_s"]["1000"] > 0

        # the gateway tells the service its prefix, so the IR's link works as given
        assert result["ir_url"].startswith("/v1/simulation/simulate/")
        wav = await client.get(result["ir_url"])
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        samples, rate_hz = sf.read(io.BytesIO(wav.content))
        assert rate_hz == 48000
        assert samples.size == pytest.approx(result["ir_length_s"] * rate_hz, abs=5)

        materials = (await client.get("/v1/simulation/materials")).json()
        assert materials["count"] >= 30


async def test_simulation_run_over_the_websocket(gateway_url: str) -> None:
    ws_url = gateway_url.replace("http://", "ws://") + "/ws?device_id=sim-phone"
    data = json.loads(curl_example_body())
    data["sample_rate_hz"] = 16000
    async with connect(ws_url) as socket:
        await socket.send(json.dumps({"event": "simulation.run", "request_id": "42", "data": data}))
        frame = json.loads(await socket.recv())
        while frame.get("type") == "event":
            frame = json.loads(await socket.recv())
    assert frame["type"] == "response", frame
    assert (frame["event"], frame["request_id"]) == ("simulation.run", "42")
    (result,) = frame["data"]["results"]
    assert set(result["bands"]) == {"125", "250", "500", "1000", "2000", "4000"} | {"8000"}
    assert any(row["rt60_s"] is not None for row in [result["broadband"], *result["bands"].values()])


async def test_validation_error_through_the_gateway(gateway_url: str) -> None:
    body = json.loads(curl_example_body())
    body["microphones"][0]["position_m"] = [2.5, 4.5, 1.2]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
        response = await client.post("/v1/simulation/simulate", json=body)
    assert response.status_code == 400
    assert "outside the room" in response.json()["error"]["message"]


def heavy_simulation() -> dict[str, Any]:
    """A live room with many rays: estimated ~14 s of one core (under the 20 s budget), far longer than the tests
    wait."""
    data = json.loads(curl_example_body())
    data.update(method="ray_tracing", n_rays=120000, sample_rate_hz=16000)
    data["room"]["default_material"] = {"absorption": 0.05}
    return data


async def running_simulations(client: httpx.AsyncClient) -> int:
    return int((await client.get("/health")).json()["workers"]["running"])


async def expect_stopped(simulation: httpx.AsyncClient, leave: Any) -> None:
    """Once the simulation runs, ``leave()``; its worker must be stopped (and replaced) within 3 s."""
    deadline = time.monotonic() + 60
    while await running_simulations(simulation) == 0:
        assert time.monotonic() < deadline, "the simulation never started"
        await asyncio.sleep(0.05)
    await leave()
    left = time.monotonic()
    while await running_simulations(simulation) > 0:
        assert time.monotonic() - left < 3.0, "the simulation still runs 3 s after its client left"
        await asyncio.sleep(0.05)


class TestClientGone:
    """Issue 14: a phone that leaves stops its simulation through the gateway; no worker computes for no one."""

    async def test_an_http_client_that_disconnects_from_the_gateway(self, suite_config: SuiteConfig) -> None:
        host, port = suite_config.url("gateway").removeprefix("http://").split(":")
        body = json.dumps(heavy_simulation()).encode()
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST /v1/simulation/simulate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

        async def leave() -> None:
            writer.close()

        async with httpx.AsyncClient(base_url=suite_config.url("simulation"), timeout=30) as simulation:
            await expect_stopped(simulation, leave)

    async def test_a_phone_whose_socket_closes_during_simulation_run(self, suite_config: SuiteConfig) -> None:
        ws_url = suite_config.url("gateway").replace("http://", "ws://") + "/ws?device_id=leaving-phone"
        async with httpx.AsyncClient(base_url=suite_config.url("simulation"), timeout=30) as simulation:
            socket = await connect(ws_url)
            await socket.send(json.dumps({"event": "simulation.run", "request_id": "1", "data": heavy_simulation()}))
            await expect_stopped(simulation, socket.close)
