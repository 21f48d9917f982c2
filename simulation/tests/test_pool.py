"""Simulations run in worker processes: the app stays responsive, runs up to the pool size, queues the rest,
and a simulation nobody waits for any more (deadline passed, client gone) has its worker process stopped."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sonalyze_protocol.errors import InternalError
from sonalyze_simulation.main import create_app
from sonalyze_simulation.pool import SimulationPool
from sonalyze_simulation.settings import Settings
from sonalyze_suite.testing import process_gone, served_app

Body = Callable[..., dict[str, Any]]


def slow_body(shoebox_body: Body) -> dict[str, Any]:
    """A live room with many rays: about half a second of one core (more on a busy machine)."""
    return shoebox_body(absorption=0.1, n_rays=20000, method="ray_tracing")


async def wait_until_running(client: httpx.AsyncClient, n_running: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await client.get("/health")).json()["workers"]["running"] >= n_running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n_running} simulations never ran at once")


class TestResponsiveness:
    async def test_health_answers_promptly_during_a_simulation(self, app_factory: Any, shoebox_body: Body) -> None:
        async with app_factory(simulation_pool_size=1) as (_, client):
            simulation = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            await wait_until_running(client, 1)
            started = time.perf_counter()
            health = await client.get("/health")
            health_s = time.perf_counter() - started
            assert health.status_code == 200
            assert not simulation.done(), "the simulation ended before health was asked; make it slower"
            assert health_s < 0.5
            response = await simulation
            assert response.status_code == 200
            assert response.json()["timings"]["simulate_s"] > 5 * health_s


class TestParallelism:
    async def test_runs_up_to_the_pool_size_at_once(self, app_factory: Any, shoebox_body: Body) -> None:
        async with app_factory(simulation_pool_size=2) as (_, client):
            first = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            second = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            await wait_until_running(client, 2)
            responses = await asyncio.gather(first, second)
            assert all(r.status_code == 200 for r in responses)
            # neither waited for a worker
            assert max(r.json()["timings"]["queue_s"] for r in responses) < 0.5

    async def test_the_rest_wait_for_a_free_worker(self, app_factory: Any, shoebox_body: Body) -> None:
        async with app_factory(simulation_pool_size=1, simulation_queue_wait_s=60.0) as (_, client):
            first = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            await wait_until_running(client, 1)
            second = await client.post("/simulate", json=slow_body(shoebox_body))
            first_body = (await first).json()
            assert second.status_code == 200
            # it queued about as long as the first one ran
            assert second.json()["timings"]["queue_s"] > 0.5 * first_body["timings"]["simulate_s"]


class TestQueueBound:
    async def test_wait_beyond_the_bound_is_503(self, app_factory: Any, shoebox_body: Body) -> None:
        async with app_factory(simulation_pool_size=1, simulation_queue_wait_s=0.2) as (_, client):
            first = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            await wait_until_running(client, 1)
            started = time.perf_counter()
            refused = await client.post("/simulate", json=shoebox_body(method="ism", max_order=2))
            assert time.perf_counter() - started < 5.0
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "service_unavailable"
            assert "busy for 0.2 s" in error["message"] and error["retry_after_ms"] >= 200
            assert (await first).status_code == 200

    async def test_a_full_queue_refuses_at_once(self, app_factory: Any, shoebox_body: Body) -> None:
        async with app_factory(simulation_pool_size=1, simulation_queue_wait_s=60.0, simulation_max_queued=0) as (
            _,
            client,
        ):
            first = asyncio.create_task(client.post("/simulate", json=slow_body(shoebox_body)))
            await wait_until_running(client, 1)
            started = time.perf_counter()
            refused = await client.post("/simulate", json=shoebox_body(method="ism", max_order=2))
            assert refused.status_code == 503
            assert time.perf_counter() - started < 1.0
            assert "requests are waiting" in refused.json()["error"]["message"]
            assert (await first).status_code == 200


class TestWorkerCrash:
    async def test_a_dead_worker_fails_its_request_and_the_pool_recovers(self) -> None:
        pool = SimulationPool(size=1, queue_wait_s=10.0, max_queued=4)
        try:
            with pytest.raises(InternalError, match="worker died"):
                await pool.run(os._exit, 3)
            assert (await pool.run(math.sqrt, 16.0)).value == 4.0
            assert pool.running == 0
        finally:
            pool.shutdown()


async def wait_until_warm(client: httpx.AsyncClient) -> None:
    """One tiny simulation first, so the worker has imported the engine before the timed request."""
    await client.post("/simulate", json={
        "room": {"type": "shoebox", "dimensions_m": [3.0, 3.0, 2.5]}, "method": "ism", "max_order": 0,
        "sources": [{"id": "s", "position_m": [1.0, 1.0, 1.2]}],
        "microphones": [{"id": "m", "position_m": [2.0, 2.0, 1.2]}],
    })  # fmt: skip


class TestDeadline:
    async def test_a_simulation_past_its_deadline_is_stopped_and_frees_its_worker(
        self, app_factory: Any, shoebox_body: Body
    ) -> None:
        """Issue 14: the worker no longer computes on for a client the gateway has already answered."""
        heavy = shoebox_body(absorption=0.05, n_rays=120000, method="ray_tracing")
        async with app_factory(simulation_pool_size=1, simulation_deadline_s=1.0) as (_, client):
            await wait_until_warm(client)
            started = time.perf_counter()
            response = await client.post("/simulate", json=heavy)
            elapsed_s = time.perf_counter() - started
            assert response.status_code == 504, response.text
            message = response.json()["error"]["message"]
            assert response.json()["error"]["code"] == "timeout" and "deadline" in message
            estimated_s = float(message.split("estimated ")[1].split(" s")[0])
            assert elapsed_s < estimated_s / 2, (elapsed_s, estimated_s)  # stopped, not run to the end
            assert (await client.get("/health")).json()["workers"]["running"] == 0


TOKEN = "test-internal-token"


@asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app under uvicorn on a free local port, lifespan and worker pool included."""
    settings = Settings(simulation_queue_wait_s=60.0, internal_auth_token=TOKEN, log_level="WARNING", **overrides)
    app = create_app(settings)
    async with served_app(app) as base_url:
        yield app, base_url


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 10 ms


async def post_then_leave(base_url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """Send ``POST path`` on a raw connection and return the writer; closing it is the disconnect."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    return writer


async def leave_and_expect_stop(app: FastAPI, client: httpx.AsyncClient, writer: Any) -> float:
    """Close the client's connection while its simulation computes; the seconds until its worker is gone."""
    await wait_until_running(client, 1)
    [pid] = app.state.service.pool.busy_worker_pids()
    before_s = cpu_s(pid)
    await asyncio.sleep(0.5)
    assert cpu_s(pid) > before_s, "the worker is not computing; make the simulation heavier"
    left = time.perf_counter()
    writer.close()
    while not process_gone(pid):
        assert time.perf_counter() - left < 10.0, "the worker still computes 10 s after its client left"
        await asyncio.sleep(0.02)
    return time.perf_counter() - left


def heavy_body(shoebox_body: Body) -> dict[str, Any]:
    """Estimated ~14 s of one core (under the 20 s budget; ~18 s taken): far longer than the test waits for its
    worker to stop."""
    return shoebox_body(absorption=0.05, n_rays=120000, method="ray_tracing")


class TestClientGone:
    async def test_a_client_that_disconnects_stops_its_simulation(self, shoebox_body: Body) -> None:
        async with served(simulation_pool_size=1) as (app, base_url):
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                await wait_until_warm(client)
                writer = await post_then_leave(base_url, "/simulate", heavy_body(shoebox_body), {})
                stopped_s = await leave_and_expect_stop(app, client, writer)
                assert stopped_s < 2.0, stopped_s
                assert (await client.get("/health")).json()["workers"]["running"] == 0
                # the replacement worker takes the next job
                started = time.perf_counter()
                response = await client.post("/simulate", json=shoebox_body(method="ism", max_order=2))
                assert response.status_code == 200, response.text
                assert time.perf_counter() - started < 15.0

    async def test_a_gateway_event_whose_connection_closes_stops_its_simulation(self, shoebox_body: Body) -> None:
        """The gateway closes its connection when the phone's socket closes or its own timeout passes."""
        async with served(simulation_pool_size=1) as (app, base_url):
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                await wait_until_warm(client)
                event = {"event": "simulation.run", "request_id": "r1", "device_id": "phone-1",
                         "data": heavy_body(shoebox_body)}  # fmt: skip
                writer = await post_then_leave(base_url, "/gateway/handle", event, {"X-Internal-Token": TOKEN})
                stopped_s = await leave_and_expect_stop(app, client, writer)
                assert stopped_s < 2.0, stopped_s
                assert (await client.get("/health")).json()["workers"]["running"] == 0
