"""Through the real gateway process: three phones on WebSockets run a lobby from creation to close.

The lobby and the gateway run as uvicorn processes on free ports (sonalyze_suite); the phones are the
virtual devices' WebSocket client (`sonalyze_devices.client.DeviceClient`). Each phone must see exactly the expected ``lobby.updated`` pushes, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sonalyze_devices.client import DeviceClient
from sonalyze_suite.launcher import Suite, SuiteConfig

pytestmark = pytest.mark.e2e

TOKEN = "lobby-e2e-token"
FRAME_TIMEOUT_S = 10.0
ROOM = {"vertices": [[0, 0], [6, 0], [6, 4], [0, 4]], "height_m": 2.7, "materials": {"floor": "wood"}}


def lobby_updates(phone: DeviceClient) -> list[tuple[str, str]]:
    """The ``(type, device_id)`` of every ``lobby.updated`` the phone received, in order."""
    return [(p.data["type"], p.data["device_id"]) for p in phone.seen if p.event == "lobby.updated"]


def events(phone: DeviceClient, name: str) -> list[dict[str, Any]]:
    return [p.data for p in phone.seen if p.event == name]


async def wait_for_pushes(phone: DeviceClient, n_pushes: int) -> None:
    async def enough() -> None:
        while len(phone.seen) < n_pushes:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(enough(), FRAME_TIMEOUT_S)


@pytest.fixture
async def suite(tmp_path: Path, make_database_url: Callable[[str], Awaitable[str]]) -> AsyncIterator[Suite]:
    config = SuiteConfig.on_free_ports(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        services=("lobby", "gateway"),
        lobby_database_url=await make_database_url("lobby_e2e"),
        internal_auth_token=TOKEN,
        log_level="INFO",
    )
    running = Suite(config, log_dir=tmp_path / "logs")
    await asyncio.to_thread(running.start, 60)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


@pytest.fixture
async def phone(suite: Suite) -> AsyncIterator[Callable[[str], Awaitable[DeviceClient]]]:
    ws_url = suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    opened: list[DeviceClient] = []

    async def open_phone(device_id: str) -> DeviceClient:
        opened.append(DeviceClient(ws_url, device_id, request_timeout_s=FRAME_TIMEOUT_S))
        await opened[-1].connect()
        return opened[-1]

    yield open_phone
    for p in opened:
        await p.close()


async def test_three_phones_create_join_assign_share_and_leave(phone, suite) -> None:
    admin, speaker, mic = [await phone(name) for name in ("e2e-admin", "e2e-speaker", "e2e-mic")]

    lobby = await admin.request("lobby.create")
    lobby_id, code = lobby["lobby_id"], lobby["code"]
    assert lobby["state"] == "open" and len(code) == 6
    joined = await speaker.request("lobby.join", {"code": code.lower()})
    assert [p["device_id"] for p in joined["participants"]] == ["e2e-admin", "e2e-speaker"]
    await mic.request("lobby.join", {"code": f" {code} "})

    await admin.request("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-speaker", "role": "speaker",
                                     "role_slot_id": "speaker_1", "role_slot_label": "Front"})  # fmt: skip
    await admin.request("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-mic", "role": "microphone",
                                     "role_slot_id": "mic_1"})  # fmt: skip
    refused = await admin.refused("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-mic",
                                                  "role": "speaker", "role_slot_id": "speaker_1"})  # fmt: skip
    assert refused["code"] == "conflict"
    forbidden = await mic.refused("lobby.start", {"lobby_id": lobby_id})
    assert forbidden["code"] == "forbidden"

    shared = await speaker.request("lobby.room_snapshot", {"lobby_id": lobby_id, "room": ROOM})
    assert shared["room_snapshot"]["height_m"] == 2.7
    got = await mic.request("lobby.get", {"lobby_id": lobby_id})
    assert got["room_snapshot"] == shared["room_snapshot"]
    roles = {p["device_id"]: (p["role"], p["role_slot_id"]) for p in got["participants"]}
    assert roles == {"e2e-admin": ("none", None), "e2e-speaker": ("speaker", "speaker_1"),
                     "e2e-mic": ("microphone", "mic_1")}  # fmt: skip

    await mic.request("lobby.leave", {"lobby_id": lobby_id})
    await speaker.request("lobby.leave", {"lobby_id": lobby_id})
    closed = await admin.request("lobby.leave", {"lobby_id": lobby_id})
    assert closed["state"] == "closed"

    common = [
        ("role_assigned", "e2e-speaker"),
        ("role_assigned", "e2e-mic"),
        ("room_snapshot", "e2e-speaker"),
        ("participant_left", "e2e-mic"),
    ]
    expected = {
        admin: [
            ("participant_joined", "e2e-speaker"),
            ("participant_joined", "e2e-mic"),
            *common,
            ("participant_left", "e2e-speaker"),
            ("lobby_closed", "e2e-admin"),
        ],
        speaker: [
            ("participant_joined", "e2e-speaker"),
            ("participant_joined", "e2e-mic"),
            *common,
            ("participant_left", "e2e-speaker"),
        ],
        mic: [("participant_joined", "e2e-mic"), *common],
    }
    snapshots = {admin: 1, speaker: 0, mic: 1}
    for p, updates in expected.items():
        await wait_for_pushes(p, len(updates) + snapshots[p])
        assert lobby_updates(p) == updates, p.device_id
        assert len(events(p, "lobby.room_snapshot")) == snapshots[p]
    assert events(admin, "lobby.room_snapshot")[0]["room"] == shared["room_snapshot"]
    last = events(admin, "lobby.updated")[-1]["lobby"]
    assert last["state"] == "closed" and {p["status"] for p in last["participants"]} == {"left"}

    async with httpx.AsyncClient(base_url=suite.config.url("lobby"), headers={"X-Internal-Token": TOKEN}) as client:
        log = (await client.get(f"/lobbies/{lobby_id}/events", headers={"X-Device-Id": "e2e-mic"})).json()
    assert [e["type"] for e in log["events"]] == [
        "lobby_created", "participant_joined", "participant_joined", "role_assigned", "role_assigned",
        "room_snapshot", "participant_left", "participant_left", "participant_left", "lobby_closed",
    ]  # fmt: skip


async def test_disconnect_is_seen_by_the_others(phone) -> None:
    admin, guest = [await phone(name) for name in ("e2e-host", "e2e-guest")]
    lobby = await admin.request("lobby.create")
    await guest.request("lobby.join", {"code": lobby["code"]})
    await guest.close()
    await wait_for_pushes(admin, 2)
    assert lobby_updates(admin) == [("participant_joined", "e2e-guest"), ("connection_changed", "e2e-guest")]
    view = await admin.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
    assert [(p["device_id"], p["connected"]) for p in view["participants"]] == [("e2e-host", True),
                                                                               ("e2e-guest", False)]  # fmt: skip
