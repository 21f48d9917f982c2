"""Two lobby replicas on one PostgreSQL (``LOBBY_REPLICAS=2``): one drives a session, the other forwards its
events to it; the driver is killed (SIGKILL) mid-session, the other takes the session over when its lease
expires and it completes. Needs PostgreSQL (``TEST_DATABASE_URL``); skipped without it, except under CI.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sonalyze_db import make_engine
from sonalyze_devices.client import Push
from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, run_demo
from sonalyze_protocol import measurement_events as events
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.services import SERVICES
from sonalyze_suite.testing import running_suite

pytestmark = pytest.mark.e2e

LEASE_S = 3.0
REPLICA_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "30",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "30",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "30",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "30",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "30",
    "MEASUREMENT_DISCONNECT_GRACE_S": "30",
    "MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S": "150",
    "SESSION_LEASE_S": str(LEASE_S),
}


@pytest.fixture(scope="module")
async def replicated_lobbies(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    if not os.environ.get("TEST_DATABASE_URL"):
        if os.environ.get("CI"):
            raise AssertionError("lobby replicas need PostgreSQL: set TEST_DATABASE_URL")
        pytest.skip("lobby replicas need PostgreSQL (TEST_DATABASE_URL)")
    base: Path = tmp_path_factory.mktemp("lobby_replicas")
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_replicas"),
        services=("measurement", "simulation", "lobby", "gateway"),
        log_level="WARNING",
        lobby_replicas=2,
        extra_env={"lobby": dict(REPLICA_ENV)},
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running


async def owner_of(url: str, session_id: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = text("SELECT owner FROM measurement_sessions WHERE session_id = :id")
            return (await connection.execute(query, {"id": session_id})).scalar_one_or_none()
    finally:
        await engine.dispose()


def test_without_postgresql_the_launcher_says_so() -> None:
    config = SuiteConfig(lobby_replicas=2)
    problem = config.lobby_database_problem()
    assert problem is not None and "PostgreSQL" in problem and "LOBBY_DATABASE_URL" in problem
    assert config.started_services.count("lobby-2") == 1 and config.port("lobby-2") == config.port("lobby") + 10
    gateway = next(s for s in SERVICES if s.name == "gateway")
    assert config.service_env(gateway)["LOBBY_URL"] == f"{config.url('lobby')},{config.url('lobby-2')}"


async def test_the_replica_driving_a_session_is_killed_and_the_other_completes_it(replicated_lobbies: Suite) -> None:
    suite = replicated_lobbies
    database_url = suite.config.lobby_database_url or ""
    timeline: dict[str, Any] = {}

    async def status_from(replica: str, session_id: str) -> dict[str, Any]:
        """session_status from a device outside the session: only the driving replica knows to say forbidden."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                suite.config.url(replica) + "/gateway/handle",
                json={
                    "event": "measurement.session_status",
                    "device_id": "outsider",
                    "data": {"session_id": session_id},
                },
                headers={"X-Internal-Token": suite.config.internal_auth_token or ""},
            )
        return response.json()

    async def admin_hook(push: Push) -> None:
        now = time.monotonic()
        if "killed" in timeline and "resumed" not in timeline:
            timeline["resumed"] = now
            timeline["resumed_with"] = (push.event, push.data.get("step"))
        if push.event != events.PHASE_UPDATE:
            return
        here = (push.data["step"], push.data["speaker_index"])
        session_id = push.data["session_id"]
        if here == ("awaiting_ready", 0) and "forwarded" not in timeline:
            owner = await owner_of(database_url, session_id)
            other = "lobby-2" if owner == "lobby" else "lobby"
            timeline["forwarded"] = await status_from(other, session_id)
        if here == ("awaiting_recording", 1) and "killed" not in timeline:
            timeline["owner"] = await owner_of(database_url, session_id)
            timeline["killed"] = time.monotonic()
            await asyncio.to_thread(suite.kill_service, timeline["owner"])

    options = DemoOptions(
        gateway_url=suite.config.url("gateway"),
        n_speakers=2,
        n_microphones=2,
        seed=31,
        session_timeout_s=240,
        answer_delay_s=0.6,
        admin_hook=admin_hook,
    )
    started = time.monotonic()
    result = await run_demo(options, Progress(io.StringIO()))

    assert "killed" in timeline and timeline["owner"] in ("lobby", "lobby-2")
    forwarded = timeline["forwarded"]
    assert forwarded.get("error", {}).get("code") == "forbidden", forwarded  # not not_found: it was forwarded
    assert result.ok, (result.errors, result.phone_errors)
    assert not [e for e in result.errors if e.get("code") == "step_timeout"], result.errors
    complete = next(data for _, event, data in result.pushes if event == events.SESSION_COMPLETE)
    assert len(complete["recordings"]) == 4
    survivor = "lobby-2" if timeline["owner"] == "lobby" else "lobby"
    assert await owner_of(database_url, result.session_id) == survivor
    print(
        f"\nreplica {timeline['owner']} killed at +{timeline['killed'] - started:.1f} s; {survivor} resumed the "
        f"session (first push {timeline['resumed_with']}) +{timeline['resumed'] - timeline['killed']:.1f} s after "
        f"(lease {LEASE_S:g} s); session complete at +{time.monotonic() - started:.1f} s"
    )
