"""Events to the lobby in batches when it is busy (gateway `RequestBatcher`, the lobby's
``/gateway/handle_batch``): through the real processes every phone still gets its own right answer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sonalyze_devices.client import DeviceClient, ErrorReply
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite

pytestmark = pytest.mark.e2e

# one request at a time to the lobby: whatever arrives meanwhile is batched
GATEWAY_ENV = {"EVENT_BATCH_AFTER_IN_FLIGHT": "1", "RATE_LIMIT_RPS": "1000", "RATE_LIMIT_BURST": "1000"}


@pytest.fixture(scope="module")
async def batching_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    base: Path = tmp_path_factory.mktemp("batching")
    lobby_url = await make_database_url("lobby_batching") if os.environ.get("TEST_DATABASE_URL") else None
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data", state_dir=base / "state", lobby_database_url=lobby_url,
        services=("lobby", "gateway"), log_level="DEBUG", extra_env={"gateway": GATEWAY_ENV},
    )  # fmt: skip
    async with running_suite(config, base / "logs", 90.0) as running:
        yield running


async def outcome(device: DeviceClient, event: str, data: dict[str, object]) -> object:
    try:
        return await device.request(event, data, timeout_s=20)
    except ErrorReply as error:
        return error.code


async def test_a_crowd_of_events_gets_the_answers_each_would_get_alone(batching_suite: Suite) -> None:
    ws_url = batching_suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    phones = [DeviceClient(ws_url, f"batch-{i}") for i in range(12)]
    await asyncio.gather(*(p.connect() for p in phones))
    try:
        admin, guests, outsiders = phones[0], phones[1:8], phones[8:]
        lobby = await admin.request("lobby.create")
        joined = await asyncio.gather(*(outcome(g, "lobby.join", {"code": lobby["code"]}) for g in guests))
        assert all(isinstance(view, dict) and view["lobby_id"] == lobby["lobby_id"] for view in joined), joined

        calls = []
        for _ in range(
            3
        ):  # 48 events at once, well under the gateway's bound (MAX_INFLIGHT_PER_SERVICE) waiting on one service
            for guest in guests:  # a member sees the whole lobby
                calls.append((guest, "member", outcome(guest, "lobby.get", {"lobby_id": lobby["lobby_id"]})))
            for outsider in outsiders:  # an outsider only its summary; an unknown code is not_found
                calls.append((outsider, "outsider", outcome(outsider, "lobby.get", {"code": lobby["code"]})))
                calls.append((outsider, "unknown", outcome(outsider, "lobby.get", {"code": "ZZZZ22"})))
            calls.append((admin, "unknown_event", outcome(admin, "lobby.dance", {})))
        answers = await asyncio.gather(*(call for _, _, call in calls))
    finally:
        await asyncio.gather(*(p.close() for p in phones), return_exceptions=True)

    for (_, kind, _), answer in zip(calls, answers, strict=True):
        if kind == "member":
            assert isinstance(answer, dict) and len(answer["participants"]) == 8, answer
        elif kind == "outsider":
            assert answer == {"lobby_id": lobby["lobby_id"], "code": lobby["code"], "state": "open",
                              "participant_count": 8}  # fmt: skip
        elif kind == "unknown":
            assert answer == "not_found"
        else:
            assert answer == "unknown_event"
    gateway_log = (batching_suite.log_dir / "gateway.log").read_text()
    assert "events to lobby in one batch" in gateway_log  # the crowd really went in batches
