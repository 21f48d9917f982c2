"""Simulations run in worker processes: the app stays responsive, runs up to the pool size, queues the rest."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sonalyze_protocol.errors import InternalError
from sonalyze_simulation.pool import SimulationPool

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
        heavy = shoebox_body(absorption=0.05, n_rays=200000, method="ray_tracing")
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
