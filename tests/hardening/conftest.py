"""Fixtures of the hardening tests (issue 14): the whole suite as real processes, used as a hostile client would."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sonalyze_suite import Suite, SuiteConfig

# short protocol waits, so a stuck step shows within seconds
LOBBY_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "8",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "20",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "6",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "45",
    "MEASUREMENT_DISCONNECT_GRACE_S": "5",
}


@pytest.fixture(scope="session")
async def hard_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """All five services on free ports (lobby and storage on PostgreSQL when TEST_DATABASE_URL is set)."""
    base: Path = tmp_path_factory.mktemp("hardening")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_hard") if on_postgres else None,
        storage_database_url=await make_database_url("storage_hard") if on_postgres else None,
        log_level="WARNING",
        extra_env={"lobby": dict(LOBBY_ENV), "measurement": {"MEASUREMENT_ANALYSIS_WORKERS": "1"}},
    )
    running = Suite(config, log_dir=base / "logs")
    await asyncio.to_thread(running.start, 120.0)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)
