"""One device id rule (`sonalyze_protocol.ids`) for the caller, the targets and the line-up."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

BAD_IDS = ["a b", " a", "é", "x" * 129]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_caller_outside_the_rule_is_refused(handle: Any, bad: str) -> None:
    reply = await handle(bad, "lobby.create")
    assert reply["error"]["code"] == "bad_request"
    assert "printable ASCII" in reply["error"]["message"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_target_or_a_line_up_device_outside_the_rule_is_refused(handle: Any, devices: Any, bad: str) -> None:
    (admin,) = devices(1)
    lobby_id = (await handle(admin, "lobby.create"))["data"]["lobby_id"]
    assign = await handle(admin, "role.assign", {"lobby_id": lobby_id, "target_device_id": bad, "role": "speaker"})
    assert assign["error"]["code"] == "bad_request"
    line_up = {
        "job_id": "j1",
        "lobby_id": lobby_id,
        "speakers": [{"device_id": bad, "slot_id": "s1"}],
        "microphones": [{"device_id": admin, "slot_id": "m1"}],
    }
    created = await handle(admin, "measurement.create_session", line_up)
    assert created["error"]["code"] == "bad_request"


async def test_the_http_header_follows_the_same_rule(client: Any) -> None:
    response = await client.post("/lobbies", headers={"X-Device-Id": "a\tb"})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "bad_request")
    ok = await client.post("/lobbies", headers={"X-Device-Id": f"dev-{uuid.uuid4().hex[:8]}"})
    assert ok.status_code == 201
