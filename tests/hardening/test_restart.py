"""A lobby killed (SIGKILL) in each step of a 2 x 2 session resumes it from its database and it completes.

The phones wait ``ANSWER_DELAY_S`` before each answer, so the kill lands in the step whose
``measurement.phase_update`` triggered it; the step stored at the kill is read from the lobby's database.
Each case prints its timeline: kill -> lobby healthy again -> first push of the resumed session.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from sonalyze_db import make_engine
from sonalyze_devices.client import Push
from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, run_demo
from sonalyze_protocol import measurement_events as events
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite

pytestmark = pytest.mark.e2e

# every wait longer than a lobby restart on a loaded machine, so a resumed step can still finish in time
STEP_TIMEOUT_S = {
    "awaiting_ready": 30.0,
    "awaiting_audio": 30.0,
    "awaiting_recording": 30.0,
    "awaiting_playback": 30.0,  # margin; the signal's length comes on top
    "awaiting_uploads": 30.0,
    "analyzing": 150.0,
}
RESTART_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "30",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "30",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "30",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "30",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "30",
    "MEASUREMENT_DISCONNECT_GRACE_S": "30",
    "MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S": "150",
}
ANSWER_DELAY_S = 0.6
# the step to kill in, and in which speaker's cycle (analyzing: after both)
KILLS = [
    ("awaiting_ready", 0),
    ("awaiting_audio", 1),
    ("awaiting_recording", 0),
    ("awaiting_playback", 1),
    ("awaiting_uploads", 0),
    ("analyzing", 2),
]


@pytest.fixture(scope="module")
async def restart_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """Measurement, simulation, lobby and gateway (lobby on PostgreSQL when TEST_DATABASE_URL is set)."""
    base: Path = tmp_path_factory.mktemp("restart")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_restart") if on_postgres else None,
        services=("measurement", "simulation", "lobby", "gateway"),
        log_level="WARNING",
        extra_env={"lobby": dict(RESTART_ENV)},
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running


def lobby_database_url(suite: Suite) -> str:
    return suite.config.lobby_database_url or suite.config.sqlite_url("lobby")


async def stored_step(url: str, session_id: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            query = text("SELECT step FROM measurement_sessions WHERE session_id = :id")
            return (await connection.execute(query, {"id": session_id})).scalar_one_or_none()
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("step", "speaker_index"), KILLS, ids=[step for step, _ in KILLS])
async def test_a_lobby_killed_in_a_step_resumes_the_session_and_it_completes(
    restart_suite: Suite, step: str, speaker_index: int
) -> None:
    suite = restart_suite
    timeline: dict[str, Any] = {}
    entered: list[tuple[str, int, float]] = []  # (step, speaker index, when the admin heard of it)
    restarts: list[asyncio.Task[None]] = []

    async def restart() -> None:
        await asyncio.to_thread(suite.start_service, "lobby")
        await asyncio.to_thread(suite.wait_healthy, ["lobby"], 60.0)
        timeline["healthy"] = time.monotonic()

    async def admin_hook(push: Push) -> None:
        now = time.monotonic()
        if "killed" in timeline and "resumed" not in timeline:
            timeline["resumed"] = now  # only the new lobby process can push now
            timeline["resumed_with"] = (push.event, push.data.get("step"))
        if push.event != events.PHASE_UPDATE:
            return
        here = (push.data["step"], push.data["speaker_index"])
        if not entered or entered[-1][:2] != here:
            entered.append((*here, now))
        if here == (step, speaker_index) and "killed" not in timeline:
            timeline["killed"] = time.monotonic()
            await asyncio.to_thread(suite.kill_service, "lobby")
            timeline["stored"] = await stored_step(lobby_database_url(suite), push.data["session_id"])
            restarts.append(asyncio.create_task(restart()))

    options = DemoOptions(
        gateway_url=suite.config.url("gateway"),
        n_speakers=2,
        n_microphones=2,
        seed=21,
        session_timeout_s=240,
        answer_delay_s=ANSWER_DELAY_S,
        admin_hook=admin_hook,
    )
    started = time.monotonic()
    result = await run_demo(options, Progress(io.StringIO()))
    await asyncio.gather(*restarts)

    assert "killed" in timeline, entered
    assert timeline["stored"] == step  # the kill landed in the step under test
    assert result.ok, (result.errors, result.phone_errors)
    assert not [e for e in result.errors if e.get("code") == "step_timeout"], result.errors
    complete = next(data for _, event, data in result.pushes if event == events.SESSION_COMPLETE)
    assert len(complete["recordings"]) == 4  # no upload lost
    for (name, _, at), (_, _, left) in itertools.pairwise(entered):
        if name in STEP_TIMEOUT_S:
            assert left - at <= STEP_TIMEOUT_S[name] + 8.0, (name, left - at)  # + the signal's length
    killed = timeline["killed"]
    print(
        f"\nkill in {step} (speaker {speaker_index}): killed at +{killed - started:.1f} s, lobby healthy "
        f"+{timeline['healthy'] - killed:.1f} s after, resumed (first push {timeline['resumed_with']}) "
        f"+{timeline['resumed'] - killed:.1f} s after the kill; session complete at +{time.monotonic() - started:.1f} s; "
        f"phone errors while it was down: {sum(len(v) for v in result.phone_errors.values())}"
    )
