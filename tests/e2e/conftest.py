"""End-to-end fixtures: the real services as processes on free ports, and scripted WebSocket phones
(`sonalyze_devices.client.DeviceClient`, the virtual phones' own client)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sonalyze_devices.client import DeviceClient
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite

# short waits, so a silent phone fails the step in seconds; the honest phones answer far quicker
PROTOCOL_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "8",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "20",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "6",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "45",
    "MEASUREMENT_DISCONNECT_GRACE_S": "5",
    "MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S": "150",
}


@pytest.fixture(scope="module")
async def suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """Measurement, lobby and gateway as real processes (lobby on PostgreSQL when TEST_DATABASE_URL is set)."""
    base: Path = tmp_path_factory.mktemp("e2e")
    lobby_url = await make_database_url("lobby_e2e") if os.environ.get("TEST_DATABASE_URL") else None
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=lobby_url,
        services=("measurement", "lobby", "gateway"),
        extra_env={"lobby": dict(PROTOCOL_ENV)},
    )
    async with running_suite(config, base / "logs", 90.0) as running:
        yield running


@pytest.fixture
async def phones(suite: Suite) -> AsyncIterator[Callable[[str], Awaitable[DeviceClient]]]:
    """``await phone("dev-1")``: a connected scripted device (`DeviceClient`), closed at the end of the test."""
    ws_url = suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    opened: list[DeviceClient] = []

    async def phone(device_id: str) -> DeviceClient:
        device = DeviceClient(ws_url, device_id)
        await device.connect()
        opened.append(device)
        return device

    yield phone
    await asyncio.gather(*(p.close() for p in opened), return_exceptions=True)


# the virtual-device sessions: every wait short enough that a fault shows within seconds
DEVICE_SESSION_ENV = {
    **PROTOCOL_ENV,
    "MEASUREMENT_RECORDING_TIMEOUT_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "25",
    "MEASUREMENT_DISCONNECT_GRACE_S": "8",
}


@pytest.fixture(scope="module")
async def full_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """All five services as real processes; lobby and storage on PostgreSQL when TEST_DATABASE_URL is set."""
    base: Path = tmp_path_factory.mktemp("e2e_full")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_full") if on_postgres else None,
        storage_database_url=await make_database_url("storage_full") if on_postgres else None,
        extra_env={"lobby": dict(DEVICE_SESSION_ENV)},
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running
