"""Issue 12's attacks against the real lobby and gateway processes, with scripted sockets.

Claim mode (the default, what the phone app needs) and token mode each run in a suite of their own.
Every test names the attack or the phone's situation it plays; the gateway README's threat table
lists the same rows with their outcomes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from sonalyze_devices.client import DeviceClient
from sonalyze_suite import Suite, SuiteConfig

pytestmark = pytest.mark.e2e

UNAUTHORIZED, DEVICE_IN_USE = 4501, 4502
TIMEOUT_S = 10.0


async def start_suite(base: Path, database_url: str, device_auth: str) -> Suite:
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=database_url,
        services=("lobby", "gateway"),
        device_auth=device_auth,
    )
    suite = Suite(config, log_dir=base / "logs")
    await asyncio.to_thread(suite.start, 60.0)
    return suite


@pytest.fixture(scope="module")
async def claim_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    suite = await start_suite(tmp_path_factory.mktemp("claim"), await make_database_url("lobby_claim"), "claim")
    try:
        yield suite
    finally:
        await asyncio.to_thread(suite.stop)


@pytest.fixture(scope="module")
async def token_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    suite = await start_suite(tmp_path_factory.mktemp("token"), await make_database_url("lobby_token"), "token")
    try:
        yield suite
    finally:
        await asyncio.to_thread(suite.stop)


def ws_url(suite: Suite) -> str:
    return suite.config.url("gateway").replace("http://", "ws://") + "/ws"


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class Phones:
    """Opens `DeviceClient`s on one suite and closes them all at the end."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.opened: list[DeviceClient] = []

    async def open(self, device_id: str, *, use_credential: bool = True, token: str | None = None) -> DeviceClient:
        phone = DeviceClient(ws_url(self.suite), device_id, request_timeout_s=TIMEOUT_S, use_credential=use_credential)
        phone.device_token = token
        await phone.connect()
        self.opened.append(phone)
        return phone

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.opened), return_exceptions=True)


@pytest.fixture
async def claim_phones(claim_suite: Suite) -> AsyncIterator[Phones]:
    phones = Phones(claim_suite)
    yield phones
    await phones.close()


@pytest.fixture
async def token_phones(token_suite: Suite) -> AsyncIterator[Phones]:
    phones = Phones(token_suite)
    yield phones
    await phones.close()


async def refused(suite: Suite, device_id: str, token: str | None = None) -> tuple[dict[str, Any], int | None]:
    """A raw socket claiming ``device_id``: the error frame it gets and the close code that follows."""
    query = f"?device_id={device_id}" + (f"&device_token={token}" if token else "")
    async with websockets.connect(ws_url(suite) + query, open_timeout=5) as ws:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        return frame, ws.close_code


async def lobby_with_guest(phones: Phones) -> tuple[DeviceClient, DeviceClient, dict[str, Any]]:
    admin = await phones.open(new_id("admin"))
    guest = await phones.open(new_id("guest"))
    lobby = await admin.request("lobby.create")
    await guest.request("lobby.join", {"code": lobby["code"]})
    return admin, guest, lobby


class TestClaimModeAttacks:
    async def test_admin_takeover_is_refused_and_the_admin_keeps_its_lobby(self, claim_phones: Phones) -> None:
        admin, guest, lobby = await lobby_with_guest(claim_phones)
        frame, code = await refused(claim_phones.suite, admin.device_id)  # the intruder knows the admin's id
        assert (frame["error"]["code"], code) == ("device_in_use", DEVICE_IN_USE)
        # the real admin still acts and is still told: nothing reached the intruder
        await admin.request("role.assign", {"lobby_id": lobby["lobby_id"], "target_device_id": guest.device_id,
                                            "role": "microphone", "role_slot_id": "mic_1"})  # fmt: skip
        pushed = await admin.expect("lobby.updated", TIMEOUT_S)
        assert pushed["type"] in ("participant_joined", "role_assigned")
        view = await admin.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
        assert view["state"] == "open"

    async def test_a_duplicate_socket_of_a_guest_is_refused(self, claim_phones: Phones) -> None:
        admin, guest, lobby = await lobby_with_guest(claim_phones)
        frame, code = await refused(claim_phones.suite, guest.device_id)
        assert (frame["error"]["code"], code) == ("device_in_use", DEVICE_IN_USE)
        await admin.request("role.assign", {"lobby_id": lobby["lobby_id"], "target_device_id": guest.device_id,
                                            "role": "microphone", "role_slot_id": "mic_1"})  # fmt: skip
        while (pushed := await guest.expect("lobby.updated", TIMEOUT_S))["type"] != "role_assigned":
            pass
        assert pushed["lobby_id"] == lobby["lobby_id"]  # the guest's own socket still gets its pushes

    async def test_an_outsider_with_the_code_sees_no_device_ids(self, claim_phones: Phones) -> None:
        admin, guest, lobby = await lobby_with_guest(claim_phones)
        outsider = await claim_phones.open(new_id("outsider"))
        seen = await outsider.request("lobby.get", {"code": lobby["code"]})
        by_id = await outsider.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
        assert seen == by_id == {"lobby_id": lobby["lobby_id"], "code": lobby["code"], "state": "open",
                                 "participant_count": 2}  # fmt: skip
        member_view = await guest.request("lobby.get", {"code": lobby["code"]})
        assert [p["device_id"] for p in member_view["participants"]] == [admin.device_id, guest.device_id]

    async def test_a_forged_broadcast_on_the_public_port_reaches_no_phone(
        self, claim_phones: Phones, claim_suite: Suite
    ) -> None:
        _, guest, lobby = await lobby_with_guest(claim_phones)
        forged = {"device_ids": [guest.device_id], "event": "measurement.stop_recording",
                  "data": {"session_id": "s", "upload_endpoint": "http://evil.example/up"}}  # fmt: skip
        async with httpx.AsyncClient(timeout=5) as client:
            # even with the right token: the public port has no internal endpoint
            public = await client.post(
                claim_suite.config.url("gateway") + "/internal/broadcast",
                json=forged,
                headers={"X-Internal-Token": claim_suite.config.internal_auth_token or ""},
            )
            old_default = await client.post(
                claim_suite.config.gateway_internal_url + "/internal/broadcast",
                json=forged,
                headers={"X-Internal-Token": "sonalyze_internal_token"},
            )
            lobby_default = await client.post(
                claim_suite.config.url("lobby") + "/gateway/handle",
                json={
                    "event": "lobby.leave",
                    "request_id": "x",
                    "device_id": guest.device_id,
                    "data": {"lobby_id": lobby["lobby_id"]},
                },
                headers={"X-Internal-Token": "sonalyze_internal_token"},
            )
        assert public.status_code == 404
        assert old_default.status_code == 401 and lobby_default.status_code == 401
        with pytest.raises(TimeoutError):
            await guest.expect("measurement.stop_recording", timeout_s=0.5)
        view = await guest.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
        assert {p["device_id"]: p["status"] for p in view["participants"]}[guest.device_id] == "joined"

    async def test_a_phone_that_lost_its_network_reconnects_within_the_liveness_window(
        self, claim_phones: Phones
    ) -> None:
        admin, guest, lobby = await lobby_with_guest(claim_phones)
        assert guest._connection is not None
        guest._connection.transport.pause_reading()  # its network is gone: the old socket answers nothing
        started_s = time.monotonic()
        back = await claim_phones.open(guest.device_id, use_credential=False)  # the app: no credential
        view = await back.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
        waited_s = time.monotonic() - started_s
        assert waited_s < 5.0
        me = next(p for p in view["participants"] if p["device_id"] == guest.device_id)
        assert me["status"] == "joined"
        await admin.request("role.assign", {"lobby_id": lobby["lobby_id"], "target_device_id": guest.device_id,
                                            "role": "speaker", "role_slot_id": "speaker_1"})  # fmt: skip
        pushed = await back.expect("lobby.updated", TIMEOUT_S)
        assert pushed["lobby_id"] == lobby["lobby_id"]


class TestTokenMode:
    async def test_a_phone_that_lost_its_token_cannot_be_impersonated_and_gets_a_clear_error(
        self, token_phones: Phones
    ) -> None:
        admin, guest, lobby = await lobby_with_guest(token_phones)
        token = guest.device_token
        assert token
        await guest.disconnect()
        # an attacker who knows the id, and the phone itself after losing its token: the same refusal
        frame, code = await refused(token_phones.suite, guest.device_id)
        assert (frame["error"]["code"], code) == ("unauthorized", UNAUTHORIZED)
        assert "has a credential" in frame["error"]["message"]
        stolen_elsewhere = admin.device_token  # a real credential, of another device
        frame, code = await refused(token_phones.suite, guest.device_id, stolen_elsewhere)
        assert (frame["error"]["code"], code) == ("unauthorized", UNAUTHORIZED)
        # with its token the phone is back in its lobby
        back = await token_phones.open(guest.device_id, token=token)
        view = await back.request("lobby.get", {"lobby_id": lobby["lobby_id"]})
        assert guest.device_id in [p["device_id"] for p in view["participants"]]

    async def test_admin_takeover_while_the_admin_is_online_is_unauthorized(self, token_phones: Phones) -> None:
        admin, _, lobby = await lobby_with_guest(token_phones)
        frame, code = await refused(token_phones.suite, admin.device_id)
        assert (frame["error"]["code"], code) == ("unauthorized", UNAUTHORIZED)
        assert (await admin.request("lobby.get", {"lobby_id": lobby["lobby_id"]}))["state"] == "open"
