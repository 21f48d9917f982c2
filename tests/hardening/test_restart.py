"""A lobby restart in the middle of a measurement: the phones are told and the lobby reopens (defect 7).

Runs last in this folder: it restarts the suite's lobby process.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import orjson
import pytest
import websockets

from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e


class Phone:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        await self.ws.send(json.dumps({"event": event, "request_id": request_id, "data": data}))
        while True:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), 15))
            if frame.get("request_id") == request_id and frame["type"] != "event":
                assert frame["type"] == "response", frame
                return frame["data"]
            self.pushes.append(frame)

    async def push_of(self, event: str, timeout_s: float) -> dict[str, Any]:
        for frame in self.pushes:
            if frame["type"] == "event" and frame["event"] == event:
                return frame["data"]
        while True:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
            if frame["type"] == "event" and frame["event"] == event:
                return frame["data"]


async def test_a_lobby_restart_cancels_the_lost_session_and_reopens_the_lobby(hard_suite: Suite) -> None:
    url = hard_suite.config.url("gateway").replace("http://", "ws://") + "/ws?device_id="
    suffix = uuid.uuid4().hex[:6]
    async with websockets.connect(url + f"admin-{suffix}") as a, websockets.connect(url + f"member-{suffix}") as m:
        admin, member = Phone(a), Phone(m)
        lobby = await admin.call("lobby.create", {})
        await member.call("lobby.join", {"code": lobby["code"]})
        started = await admin.call("lobby.start", {"lobby_id": lobby["lobby_id"]})
        assert started["state"] == "measurement_running"

        await asyncio.to_thread(hard_suite.stop_service, "lobby")
        await asyncio.to_thread(hard_suite.start_service, "lobby")
        await asyncio.to_thread(hard_suite.wait_healthy, ["lobby"], 60.0)

        for phone in (admin, member):
            cancelled = await phone.push_of("measurement.session_cancelled", 30)
            assert cancelled["reason"] == "service_restarted", cancelled
            assert cancelled["lobby_id"] == lobby["lobby_id"]
        reopened = await admin.call("lobby.get", {"lobby_id": lobby["lobby_id"]})
        assert reopened["state"] == "open"
