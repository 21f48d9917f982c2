"""Through the real gateway process: three phones on WebSockets run a lobby from creation to close.

The lobby and the gateway run as uvicorn processes on free ports (sonalyze_suite); the phones use the
``websockets`` client. Each phone must see exactly the expected ``lobby.updated`` pushes, in order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sonalyze_suite.launcher import Suite, SuiteConfig
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

TOKEN = "lobby-e2e-token"
FRAME_TIMEOUT_S = 10.0
ROOM = {"vertices": [[0, 0], [6, 0], [6, 4], [0, 4]], "height_m": 2.7, "materials": {"floor": "wood"}}


class Phone:
    """One WebSocket client: requests wait for their response, pushes are kept in arrival order."""

    def __init__(self, device_id: str, socket: ClientConnection) -> None:
        self.device_id = device_id
        self.socket = socket
        self.pushes: list[dict[str, Any]] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self._arrived = asyncio.Event()

    async def _read(self) -> None:
        async for raw in self.socket:
            frame = orjson.loads(raw)
            if frame["type"] == "event":
                self.pushes.append(frame)
                self._arrived.set()
            elif (future := self._waiting.pop(str(frame.get("request_id")), None)) is not None:
                future.set_result(frame)

    async def request(self, event: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The reply frame (response or error) to one request."""
        request_id = f"{self.device_id}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await self.socket.send(orjson.dumps({"event": event, "request_id": request_id, "data": data or {}}).decode())
        return await asyncio.wait_for(future, FRAME_TIMEOUT_S)

    async def send(self, event: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response's data; fails the test on an error frame."""
        frame = await self.request(event, data)
        assert frame["type"] == "response", frame
        return frame["data"]

    def updates(self) -> list[tuple[str, str]]:
        return [(p["data"]["type"], p["data"]["device_id"]) for p in self.pushes if p["event"] == "lobby.updated"]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [p["data"] for p in self.pushes if p["event"] == name]

    async def wait_for_pushes(self, n_pushes: int) -> None:
        async def enough() -> None:
            while len(self.pushes) < n_pushes:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), FRAME_TIMEOUT_S)

    async def close(self) -> None:
        await self.socket.close()
        self._reader.cancel()


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
async def phone(suite: Suite) -> AsyncIterator[Callable[[str], Awaitable[Phone]]]:
    ws_url = suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    opened: list[Phone] = []

    async def open_phone(device_id: str) -> Phone:
        socket = await connect(f"{ws_url}?device_id={device_id}", open_timeout=FRAME_TIMEOUT_S)
        opened.append(Phone(device_id, socket))
        return opened[-1]

    yield open_phone
    for p in opened:
        await p.close()


async def test_three_phones_create_join_assign_share_and_leave(phone, suite) -> None:
    admin, speaker, mic = [await phone(name) for name in ("e2e-admin", "e2e-speaker", "e2e-mic")]

    lobby = await admin.send("lobby.create")
    lobby_id, code = lobby["lobby_id"], lobby["code"]
    assert lobby["state"] == "open" and len(code) == 6
    joined = await speaker.send("lobby.join", {"code": code.lower()})
    assert [p["device_id"] for p in joined["participants"]] == ["e2e-admin", "e2e-speaker"]
    await mic.send("lobby.join", {"code": f" {code} "})

    await admin.send("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-speaker", "role": "speaker",
                                     "role_slot_id": "speaker_1", "role_slot_label": "Front"})  # fmt: skip
    await admin.send("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-mic", "role": "microphone",
                                     "role_slot_id": "mic_1"})  # fmt: skip
    refused = await admin.request("role.assign", {"lobby_id": lobby_id, "target_device_id": "e2e-mic",
                                                  "role": "speaker", "role_slot_id": "speaker_1"})  # fmt: skip
    assert (refused["type"], refused["error"]["code"]) == ("error", "conflict")
    forbidden = await mic.request("lobby.start", {"lobby_id": lobby_id})
    assert forbidden["error"]["code"] == "forbidden"

    shared = await speaker.send("lobby.room_snapshot", {"lobby_id": lobby_id, "room": ROOM})
    assert shared["room_snapshot"]["height_m"] == 2.7
    got = await mic.send("lobby.get", {"lobby_id": lobby_id})
    assert got["room_snapshot"] == shared["room_snapshot"]
    roles = {p["device_id"]: (p["role"], p["role_slot_id"]) for p in got["participants"]}
    assert roles == {"e2e-admin": ("none", None), "e2e-speaker": ("speaker", "speaker_1"),
                     "e2e-mic": ("microphone", "mic_1")}  # fmt: skip

    await mic.send("lobby.leave", {"lobby_id": lobby_id})
    await speaker.send("lobby.leave", {"lobby_id": lobby_id})
    closed = await admin.send("lobby.leave", {"lobby_id": lobby_id})
    assert closed["state"] == "closed"

    common = [
        ("role_assigned", "e2e-speaker"),
        ("role_assigned", "e2e-mic"),
        ("room_snapshot", "e2e-speaker"),
        ("participant_left", "e2e-mic"),
    ]
    expected = {
        admin: [("participant_joined", "e2e-speaker"), ("participant_joined", "e2e-mic"), *common,
                ("participant_left", "e2e-speaker"), ("lobby_closed", "e2e-admin")],  # fmt: skip
        speaker: [("participant_joined", "e2e-speaker"), ("participant_joined", "e2e-mic"), *common,
                  ("participant_left", "e2e-speaker")],  # fmt: skip
        mic: [("participant_joined", "e2e-mic"), *common],
    }
    snapshots = {admin: 1, speaker: 0, mic: 1}
    for p, updates in expected.items():
        await p.wait_for_pushes(len(updates) + snapshots[p])
        assert p.updates() == updates, p.device_id
        assert len(p.events("lobby.room_snapshot")) == snapshots[p]
    assert admin.events("lobby.room_snapshot")[0]["room"] == shared["room_snapshot"]
    last = admin.events("lobby.updated")[-1]["lobby"]
    assert last["state"] == "closed" and {p["status"] for p in last["participants"]} == {"left"}

    async with httpx.AsyncClient(base_url=suite.config.url("lobby"), headers={"X-Internal-Token": TOKEN}) as client:
        log = (await client.get(f"/lobbies/{lobby_id}/events", headers={"X-Device-Id": "e2e-mic"})).json()
    assert [e["type"] for e in log["events"]] == [
        "lobby_created", "participant_joined", "participant_joined", "role_assigned", "role_assigned",
        "room_snapshot", "participant_left", "participant_left", "participant_left", "lobby_closed",
    ]  # fmt: skip


async def test_disconnect_is_seen_by_the_others(phone) -> None:
    admin, guest = [await phone(name) for name in ("e2e-host", "e2e-guest")]
    lobby = await admin.send("lobby.create")
    await guest.send("lobby.join", {"code": lobby["code"]})
    await guest.close()
    await admin.wait_for_pushes(2)
    assert admin.updates() == [("participant_joined", "e2e-guest"), ("connection_changed", "e2e-guest")]
    view = await admin.send("lobby.get", {"lobby_id": lobby["lobby_id"]})
    assert [(p["device_id"], p["connected"]) for p in view["participants"]] == [("e2e-host", True),
                                                                               ("e2e-guest", False)]  # fmt: skip
