"""Whole sessions against two gateways on one Redis backplane (``GATEWAY_REPLICAS=2``), all five services real.

The phones of one session are spread over both gateways (the lobby pushes through either one's
internal listener and reaches them all); then one gateway is killed mid-session (SIGKILL: no drain,
no notice) and its phones reconnect to the other, which tells the lobby they went and came back, so
the lobby sends again what it waits for; the session completes. The same with a drained gateway
(SIGTERM: its sockets are closed with 1012). Needs Redis (``TEST_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``); skipped without it, except under CI.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sonalyze_devices.client import Push
from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, DemoResult, run_demo
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.launcher import check_redis
from sonalyze_suite.testing import running_suite

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SESSION_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "8",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "20",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "8",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "25",
    "MEASUREMENT_DISCONNECT_GRACE_S": "8",
    "MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S": "150",
}


@pytest.fixture(scope="module")
async def replicated_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    if problem := check_redis(REDIS_URL):
        if os.environ.get("CI"):
            raise AssertionError(problem)
        pytest.skip(problem)
    base: Path = tmp_path_factory.mktemp("replicas")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_replicas") if on_postgres else None,
        storage_database_url=await make_database_url("storage_replicas") if on_postgres else None,
        extra_env={"lobby": dict(SESSION_ENV)},
        gateway_replicas=2,
        redis_url=REDIS_URL,
        redis_key_prefix=f"e2e-{uuid.uuid4().hex[:8]}:",
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running


async def run_split_session(suite: Suite, home: int = 0, **options: Any) -> DemoResult:
    """The admin and the HTTP calls on gateway ``home``, the phones spread over both."""
    urls = suite.config.gateway_urls()
    urls = urls[home:] + urls[:home]
    demo = DemoOptions(
        gateway_url=urls[0],
        more_gateway_urls=urls[1:],
        n_speakers=2,
        n_microphones=2,
        session_timeout_s=240,
        **options,
    )
    return await run_demo(demo, Progress(io.StringIO()))


def gateway_of(result: DemoResult, slot: str) -> str:
    return str(result.clients[slot].urls[0])


class TestTwoGateways:
    async def test_phones_of_one_session_split_across_two_gateways_complete_it(self, replicated_suite: Suite) -> None:
        result = await run_split_session(replicated_suite, seed=11)

        assert result.ok, (result.errors, result.phone_errors)
        placed = {gateway_of(result, slot) for slot in result.devices}
        assert len(placed) == 2  # both gateways held phones of the session
        assert not any(client.reconnects for client in result.clients.values())

    @pytest.mark.parametrize(
        ("how", "victim"),
        [
            ("killed", "gateway-2"),
            ("drained", "gateway-2"),
            # the gateway the services push through first: their broadcast client moves on to the other
            ("killed", "gateway"),
        ],
    )
    async def test_a_gateway_killed_or_drained_mid_session_its_phones_reconnect_to_the_other_and_it_completes(
        self, replicated_suite: Suite, how: str, victim: str
    ) -> None:
        for name in replicated_suite.config.gateway_names:  # an earlier case stopped one: back for this one
            if name not in replicated_suite.children:
                await asyncio.to_thread(replicated_suite.start_service, name)
                await asyncio.to_thread(replicated_suite.wait_healthy, [name], 60.0)
        victim_url = replicated_suite.config.url(victim).replace("http://", "ws://") + "/ws"
        timeline: dict[str, float] = {"start": time.monotonic()}
        stop = replicated_suite.kill_service if how == "killed" else replicated_suite.stop_service

        async def admin_hook(push: Push) -> None:
            if push.event == "measurement.speaker_complete" and "killed" not in timeline:
                timeline["killed"] = time.monotonic()
                await asyncio.to_thread(stop, victim)  # SIGKILL, or SIGTERM: drain, close with 1012

        home = 1 if victim == "gateway" else 0  # the admin and HTTP stay on the gateway that lives
        result = await run_split_session(replicated_suite, home, seed=12, reconnect=True, admin_hook=admin_hook)
        timeline["done"] = time.monotonic()

        assert "killed" in timeline
        assert result.ok, (result.errors, result.phone_errors)
        assert result.errors == []  # no step timed out: the lobby re-sent what it awaited at once
        moved = {slot: c.reconnects for slot, c in result.clients.items() if c.urls[0] == victim_url}
        assert moved and all(len(r) == 1 for r in moved.values()), moved
        assert all(url != victim_url and took_s < 5 for r in moved.values() for _, url, took_s in r), moved
        if how == "drained":
            assert {code for r in moved.values() for code, _, _ in r} == {1012}
        kept = [c for c in result.clients.values() if c.urls[0] != victim_url]
        assert not any(c.reconnects for c in kept)
        print(
            f"\n{victim} {how} timeline: {how} at +{timeline['killed'] - timeline['start']:.1f} s, "
            f"{len(moved)} phones back within "
            f"{max(took for r in moved.values() for _, _, took in r) * 1000:.0f} ms, "
            f"session complete at +{timeline['done'] - timeline['start']:.1f} s; "
            f"errors on the way: {[e.get('code') for e in result.errors]}"
        )
