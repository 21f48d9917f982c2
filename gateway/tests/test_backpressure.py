"""Backpressure: a saturated service gets `overloaded` answers at once; everything else carries on."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sonalyze_gateway.backpressure import RETRY_AFTER_MAX_MS, ServiceGate

LIMIT = 2
SLOW_S = 3.0


class TestServiceGate:
    def test_admits_up_to_the_limit_then_refuses(self) -> None:
        gate = ServiceGate(limit=2, retry_after_floor_ms=100)
        assert [gate.try_enter() for _ in range(3)] == [True, True, False]
        assert (gate.in_flight, gate.refused) == (2, 1)
        gate.leave(0.01)
        assert gate.try_enter()

    def test_retry_after_follows_the_answer_time_within_bounds(self) -> None:
        gate = ServiceGate(limit=1, retry_after_floor_ms=100)
        assert gate.retry_after_ms == 100  # nothing measured yet: the floor
        for _ in range(100):
            gate.try_enter()
            gate.leave(2.0)
        assert 1900 <= gate.retry_after_ms <= 2000
        for _ in range(200):
            gate.try_enter()
            gate.leave(60.0)
        assert gate.retry_after_ms == RETRY_AFTER_MAX_MS

    def test_a_slow_service_gets_fewer_events_at_a_time_until_it_speeds_up(self) -> None:
        gate = ServiceGate(limit=64, retry_after_floor_ms=100, max_wait_ms=500)
        assert gate.admitted == 64
        for _ in range(100):
            gate.try_enter()
            gate.leave(5.0)  # answers take 10x the bound
        assert 2 <= gate.admitted <= 8
        for _ in range(100):
            gate.try_enter()
            gate.leave(0.01)
        assert gate.admitted == 64

    def test_a_limit_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError):
            ServiceGate(limit=0, retry_after_floor_ms=100)


@pytest.mark.e2e
class TestSaturatedService:
    async def test_overloaded_arrives_at_once_while_other_work_still_answers(
        self, stubs: Any, kit: Any, tmp_path: Path
    ) -> None:
        env = {
            **kit.backend_env(stubs),
            "MAX_INFLIGHT_PER_SERVICE": str(LIMIT),
            "OVERLOAD_RETRY_AFTER_MS": "150",
            "HTTP_TIMEOUT_SECONDS": "10",
        }
        running = kit.start_gateway(tmp_path, env)
        device = "dev-" + uuid.uuid4().hex[:10]
        try:
            async with kit.open_socket(running, device) as ws:
                for i in range(LIMIT):  # the lobby now holds every slot for SLOW_S
                    message = {"event": "lobby.get", "request_id": f"slow-{i}", "data": {"sleep_s": SLOW_S}}
                    await ws.send(orjson.dumps(message).decode())
                refused = await kit.request(ws, "lobby.get", {}, "refused", timeout_s=SLOW_S / 2)
                local = await kit.request(ws, "identify", {"device_id": device}, "local", timeout_s=SLOW_S / 2)
                other = await kit.request(ws, "simulation.run", {}, "other", timeout_s=SLOW_S / 2)
                pong = await ws.ping()
                await asyncio.wait_for(pong, SLOW_S / 2)
                async with httpx.AsyncClient() as client:
                    pushed = await client.post(
                        running.internal_url + "/internal/broadcast",
                        json={"device_ids": [device], "event": "bench.push", "data": {}},
                        headers={"X-Internal-Token": kit.token},
                        timeout=SLOW_S / 2,
                    )
                    push = await kit.recv_frame(ws, SLOW_S / 2)
                    health = (await client.get(running.url + "/healthz", timeout=SLOW_S / 2)).json()
                slow = [await kit.recv_frame(ws, SLOW_S + 5) for _ in range(LIMIT)]
                after = await kit.request(ws, "lobby.get", {}, "after")
        finally:
            running.suite.stop()
        assert refused["type"] == "error" and refused["error"]["code"] == "overloaded", refused
        assert refused["error"]["retry_after_ms"] >= 150
        assert (local["type"], local["request_id"], local["data"]["device_id"]) == ("response", "local", device)
        assert other["type"] == "response"
        assert pushed.json()["delivered"] == [device]
        assert push["event"] == "bench.push"
        # all of that happened while the slow events were still in the lobby
        assert health["forwards"]["lobby"] == {"in_flight": LIMIT, "limit": LIMIT, "refused": 1}
        assert health["forwards"]["simulation"]["in_flight"] == 0
        assert sorted(f["request_id"] for f in slow) == [f"slow-{i}" for i in range(LIMIT)]
        assert all(f["type"] == "response" for f in slow)
        assert after["type"] == "response"  # the slots came back
