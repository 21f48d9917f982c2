"""The lobby through its app: HTTP endpoints, /gateway/handle, errors and health."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import event

ROOM = {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}


def as_(device_id: str) -> dict[str, str]:
    return {"X-Device-Id": device_id}


async def create(client: httpx.AsyncClient, device_id: str) -> dict[str, Any]:
    response = await client.post("/lobbies", headers=as_(device_id))
    assert response.status_code == 201, response.text
    return response.json()


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


class TestHttpLobbies:
    async def test_full_flow(self, client, devices, gateway) -> None:
        admin, guest = devices(2)
        lobby = await create(client, admin)
        assert set(lobby) == {"lobby_id", "code", "state", "creator_device_id", "admin_device_id", "created_at",
                              "room_snapshot", "step_index", "profile_id", "participants"}  # fmt: skip
        assert set(lobby["participants"][0]) == {"device_id", "role", "role_slot_id", "role_slot_label", "status",
                                                 "connected", "joined_at"}  # fmt: skip
        lobby_id = lobby["lobby_id"]
        joined = await client.post("/lobbies/join", json={"code": f" {lobby['code'].lower()} "}, headers=as_(guest))
        assert joined.status_code == 200 and len(joined.json()["participants"]) == 2
        assigned = await client.post(
            f"/lobbies/{lobby_id}/roles",
            json={"target_device_id": guest, "role": "speaker", "role_slot_id": "spk_1"},
            headers=as_(admin),
        )
        assert assigned.status_code == 200
        assert assigned.json()["participants"][1]["role"] == "speaker"
        shared = await client.post(f"/lobbies/{lobby_id}/room_snapshot", json={"room": ROOM}, headers=as_(guest))
        assert shared.status_code == 200 and shared.json()["room_snapshot"]["height_m"] == 2.5
        by_code = await client.get(f"/lobbies/by-code/{lobby['code'].lower()}", headers=as_(guest))
        got = await client.get(f"/lobbies/{lobby_id}", headers=as_(guest))
        assert by_code.json() == got.json()
        started = await client.post(f"/lobbies/{lobby_id}/start", headers=as_(admin))
        assert started.json()["state"] == "measurement_running"
        left = await client.post(f"/lobbies/{lobby_id}/leave", headers=as_(admin))
        assert left.json()["state"] == "closed"
        events = await client.get(f"/lobbies/{lobby_id}/events", params={"after": 0}, headers=as_(guest))
        types = [e["type"] for e in events.json()["events"]]
        assert types == ["lobby_created", "participant_joined", "role_assigned", "room_snapshot", "state_changed",
                         "participant_left", "lobby_closed"]  # fmt: skip
        assert gateway.types_to(guest) == ["participant_joined", "role_assigned", "room_snapshot", "state_changed",
                                           "lobby_closed"]  # fmt: skip

    async def test_events_after_returns_only_newer(self, client, devices) -> None:
        admin, guest = devices(2)
        lobby = await create(client, admin)
        await client.post("/lobbies/join", json={"code": lobby["code"]}, headers=as_(guest))
        first = (await client.get(f"/lobbies/{lobby['lobby_id']}/events", headers=as_(admin))).json()
        after = first["events"][0]["id"]
        rest = await client.get(f"/lobbies/{lobby['lobby_id']}/events", params={"after": after}, headers=as_(admin))
        assert [e["id"] for e in rest.json()["events"]] == [e["id"] for e in first["events"][1:]]

    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "code"),
        [
            ("get", "/lobbies/{unknown}", None, 404, "not_found"),
            ("post", "/lobbies/join", {"code": "ZZZZZZ"}, 404, "not_found"),
            ("post", "/lobbies/join", {}, 422, "bad_request"),
            ("post", "/lobbies/{lobby}/start", None, 403, "forbidden"),
            ("post", "/lobbies/{lobby}/roles", {"target_device_id": "x", "role": "speaker"}, 403, "forbidden"),
            ("post", "/lobbies/{lobby}/roles", {"target_device_id": "x", "role": "drummer"}, 422, "bad_request"),
            ("post", "/lobbies/{lobby}/room_snapshot", {"room": ROOM}, 403, "forbidden"),
            ("post", "/lobbies/{lobby}/room_snapshot", {"room": {"vertices": [], "height_m": 2}}, 422, "bad_request"),
            ("post", "/lobbies/{lobby}/leave", None, 403, "forbidden"),
            ("get", "/lobbies/{lobby}/events", None, 403, "forbidden"),
            ("get", "/lobbies/not-a-uuid", None, 422, "bad_request"),
        ],
    )
    async def test_errors_as_a_stranger(self, client, devices, method, path, body, status, code) -> None:
        admin, stranger = devices(2)
        lobby = await create(client, admin)
        url = path.format(lobby=lobby["lobby_id"], unknown=uuid.uuid4())
        kwargs = {"json": body} if body is not None else {}
        response = await client.request(method.upper(), url, headers=as_(stranger), **kwargs)
        assert response.status_code == status, response.text
        assert error_code(response) == code
        assert response.json()["error"]["message"]

    async def test_closed_lobby_join_is_409(self, client, devices) -> None:
        admin, guest = devices(2)
        lobby = await create(client, admin)
        await client.post(f"/lobbies/{lobby['lobby_id']}/leave", headers=as_(admin))
        response = await client.post("/lobbies/join", json={"code": lobby["code"]}, headers=as_(guest))
        assert (response.status_code, error_code(response)) == (409, "conflict")

    async def test_missing_device_header_is_bad_request(self, client) -> None:
        response = await client.post("/lobbies")
        assert (response.status_code, error_code(response)) == (422, "bad_request")
        assert "X-Device-Id" in response.json()["error"]["message"]

    async def test_missing_token_is_unauthorized(self, client, devices) -> None:
        (device,) = devices(1)
        response = await client.post("/lobbies", headers={**as_(device), "X-Internal-Token": "wrong"})
        assert (response.status_code, error_code(response)) == (401, "unauthorized")


class TestGatewayHandle:
    async def test_events_share_the_service_with_http(self, handle, client, devices, gateway) -> None:
        admin, guest = devices(2)
        created = (await handle(admin, "lobby.create"))["data"]
        joined = (await handle(guest, "lobby.join", {"code": created["code"].lower()}))["data"]
        assert [p["device_id"] for p in joined["participants"]] == [admin, guest]
        role = await handle(
            admin,
            "role.assign",
            {"lobby_id": created["lobby_id"], "target_device_id": guest, "role": "microphone", "role_slot_id": "m1"},
        )
        assert role["data"]["participants"][1]["role_slot_id"] == "m1"
        snap = await handle(guest, "lobby.room_snapshot", {"lobby_id": created["lobby_id"], "room": ROOM})
        assert snap["data"]["room_snapshot"]["vertices"][2] == [5.0, 4.0]
        by_code = await handle(admin, "lobby.get", {"code": created["code"]})
        http = await client.get(f"/lobbies/{created['lobby_id']}", headers=as_(admin))
        assert by_code["data"] == http.json()
        assert [d["device_id"] for d in gateway.to(admin, "lobby.room_snapshot")] == [guest]
        started = await handle(admin, "lobby.start", {"lobby_id": created["lobby_id"]})
        assert started["data"]["state"] == "measurement_running"
        left = await handle(guest, "lobby.leave", {"lobby_id": created["lobby_id"]})
        assert left["data"]["participants"][1]["status"] == "left"

    @pytest.mark.parametrize(
        ("event", "data", "code", "in_message"),
        [
            ("lobby.nope", {}, "unknown_event", "lobby.nope"),
            ("lobby.join", {}, "bad_request", "data.code"),
            ("lobby.join", {"code": "ZZZZZZ"}, "not_found", "ZZZZZZ"),
            ("lobby.leave", {"lobby_id": "nope"}, "bad_request", "data.lobby_id"),
            ("lobby.get", {}, "bad_request", "exactly one"),
            (
                "lobby.room_snapshot",
                {"lobby_id": str(uuid.uuid4()), "room": {"height_m": 2}},
                "bad_request",
                "data.room.sonalyze.vertices",
            ),
            (
                "role.assign",
                {"lobby_id": str(uuid.uuid4()), "target_device_id": "x", "role": "speaker"},
                "not_found",
                "does not exist",
            ),
        ],
    )
    async def test_errors(self, handle, devices, event, data, code, in_message) -> None:
        (device,) = devices(1)
        reply = await handle(device, event, data)
        assert "data" not in reply
        assert reply["error"]["code"] == code
        assert in_message in reply["error"]["message"]

    async def test_forbidden_for_a_guest(self, handle, devices) -> None:
        admin, guest = devices(2)
        created = (await handle(admin, "lobby.create"))["data"]
        await handle(guest, "lobby.join", {"code": created["code"]})
        reply = await handle(guest, "lobby.start", {"lobby_id": created["lobby_id"]})
        assert reply["error"]["code"] == "forbidden"

    async def test_needs_the_internal_token(self, client, devices) -> None:
        (device,) = devices(1)
        body = {"event": "lobby.create", "device_id": device, "data": {}}
        response = await client.post("/gateway/handle", json=body, headers={"X-Internal-Token": ""})
        assert (response.status_code, error_code(response)) == (401, "unauthorized")

    async def test_overlong_device_id_is_bad_request(self, handle) -> None:
        reply = await handle("x" * 500, "lobby.create")
        assert reply["error"]["code"] == "bad_request"

    def test_events_are_served_in_front_of_every_middleware(self, app) -> None:
        from sonalyze_protocol.handlers import GatewayHandleFastPath

        assert app.user_middleware[0].cls is GatewayHandleFastPath


class RecordingCoordinator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.closed: list[str] = []

    async def device_connection_changed(self, device_id: str, connected: bool) -> None:
        self.calls.append((device_id, connected))

    async def lobby_closed(self, lobby_id: str) -> None:
        self.closed.append(lobby_id)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def use_coordinator(app):
    """``use_coordinator(fake)`` puts ``fake`` in place of the app's coordinator until the test ends."""
    original = app.state.lobby.coordinator

    def swap(coordinator: Any) -> Any:
        app.state.lobby.coordinator = coordinator
        return coordinator

    yield swap
    app.state.lobby.coordinator = original


class TestDeviceConnection:
    async def test_disconnect_updates_flag_pushes_and_tells_the_coordinator(
        self, use_coordinator, handle, devices, gateway
    ) -> None:
        coordinator = use_coordinator(RecordingCoordinator())
        admin, phone = devices(2)
        created = (await handle(admin, "lobby.create"))["data"]
        await handle(phone, "lobby.join", {"code": created["code"]})
        gateway.clear()
        reply = await handle(phone, "device.disconnected", request_id=None)
        assert reply["data"] == {"connected": False, "lobby_ids": [created["lobby_id"]]}
        view = (await handle(admin, "lobby.get", {"lobby_id": created["lobby_id"]}))["data"]
        assert [p["connected"] for p in view["participants"]] == [True, False]
        (push,) = gateway.pushes
        assert (push.data["type"], push.data["device_id"]) == ("connection_changed", phone)
        await handle(phone, "device.connected")
        assert coordinator.calls == [(phone, False), (phone, True)]

    async def test_device_in_no_lobby_still_reaches_the_coordinator(
        self, use_coordinator, handle, devices, gateway
    ) -> None:
        coordinator = use_coordinator(RecordingCoordinator())
        (phone,) = devices(1)
        reply = await handle(phone, "device.connected")
        assert reply["data"] == {"connected": True, "lobby_ids": []}
        assert coordinator.calls == [(phone, True)]
        assert gateway.pushes == []


class TestPresenceBatch:
    """``device.presence``: the gateway's notices in one request, applied in order."""

    async def test_a_batch_updates_lobbies_and_tells_the_coordinator_every_notice(
        self, use_coordinator, handle, devices, gateway
    ) -> None:
        coordinator = use_coordinator(RecordingCoordinator())
        admin, phone, blip, offline, stranger = devices(5)
        created = (await handle(admin, "lobby.create"))["data"]
        for device in (phone, blip):
            await handle(device, "lobby.join", {"code": created["code"]})
        gateway.clear()
        changes = [
            {"device_id": phone, "connected": False},
            {"device_id": blip, "connected": False},
            {"device_id": stranger, "connected": True},
            {"device_id": offline, "connected": False},
            {"device_id": blip, "connected": True},  # dropped and came back within one batch
        ]
        reply = await handle("gateway", "device.presence", {"changes": changes}, request_id=None)
        assert reply["data"] == {"applied": 5, "lobby_ids": [created["lobby_id"]]}
        view = (await handle(admin, "lobby.get", {"lobby_id": created["lobby_id"]}))["data"]
        assert {p["device_id"]: p["connected"] for p in view["participants"]} == {admin: True, phone: False, blip: True}
        assert [(p.data["type"], p.data["device_id"]) for p in gateway.pushes] == [("connection_changed", phone)]
        assert coordinator.calls == [(c["device_id"], c["connected"]) for c in changes]
        # a device in no lobby still had its presence stored: it joins as disconnected
        joined = (await handle(offline, "lobby.join", {"code": created["code"]}))["data"]
        assert {p["device_id"]: p["connected"] for p in joined["participants"]}[offline] is False

    async def test_a_storm_of_devices_in_no_lobby_is_one_write_transaction(self, app, handle, devices) -> None:
        phones = devices(300)
        writes: dict[int, int] = {}  # connection -> write statements since its last commit
        write_commits: list[int] = []
        engine = app.state.lobby.database.engine.sync_engine

        def on_statement(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                writes[id(connection)] = writes.get(id(connection), 0) + 1

        def on_commit(connection: Any) -> None:
            # only transactions that wrote: on PostgreSQL one engine also serves the lobby's background
            # readers (the outbox relay's and the session lease's polls), whose commits are not this batch's
            if writes.pop(id(connection), 0):
                write_commits.append(id(connection))

        event.listen(engine, "before_cursor_execute", on_statement)
        event.listen(engine, "commit", on_commit)
        try:
            changes = [{"device_id": d, "connected": True} for d in phones]
            reply = await handle("gateway", "device.presence", {"changes": changes}, request_id=None)
        finally:
            event.remove(engine, "before_cursor_execute", on_statement)
            event.remove(engine, "commit", on_commit)
        assert reply["data"] == {"applied": 300, "lobby_ids": []}
        assert len(write_commits) == 1

    @pytest.mark.parametrize(
        "data",
        [{}, {"changes": []}, {"changes": [{"device_id": "", "connected": True}]}, {"changes": [{"device_id": "a"}]}],
    )
    async def test_a_malformed_batch_is_refused(self, handle, data: dict[str, Any]) -> None:
        reply = await handle("gateway", "device.presence", data, request_id=None)
        assert reply["error"]["code"] == "bad_request"


class TestLobbyClosedReachesTheCoordinator:
    async def test_only_a_closing_leave_tells_it(self, use_coordinator, handle, devices) -> None:
        coordinator = use_coordinator(RecordingCoordinator())
        admin, guest = devices(2)
        created = (await handle(admin, "lobby.create"))["data"]
        await handle(guest, "lobby.join", {"code": created["code"]})
        await handle(guest, "lobby.leave", {"lobby_id": created["lobby_id"]})
        assert coordinator.closed == []
        await handle(admin, "lobby.leave", {"lobby_id": created["lobby_id"]})
        assert coordinator.closed == [created["lobby_id"]]

    async def test_a_failing_coordinator_does_not_fail_the_leave(self, use_coordinator, handle, devices) -> None:
        class Broken(RecordingCoordinator):
            async def lobby_closed(self, lobby_id: str) -> None:
                raise RuntimeError("boom")

        use_coordinator(Broken())
        (admin,) = devices(1)
        created = (await handle(admin, "lobby.create"))["data"]
        reply = await handle(admin, "lobby.leave", {"lobby_id": created["lobby_id"]})
        assert reply["data"]["state"] == "closed"


class TestHealth:
    async def test_reports_the_database(self, client) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": "lobby", "database": "ok", "outbox": None}

    async def test_database_down_is_503(self, app, client) -> None:
        from sonalyze_db import make_engine

        working = app.state.lobby.database  # health reads through the read engine
        down = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        app.state.lobby.database = replace(working, read_engine=down)
        try:
            response = await client.get("/health")
        finally:
            await down.dispose()
            app.state.lobby.database = working
        assert response.status_code == 503
        assert response.json()["database"].startswith("error:")


class TestDatabaseDown:
    @pytest.fixture
    async def down_client(self, settings, broadcaster):
        from asgi_lifespan import LifespanManager

        from sonalyze_lobby.main import create_app

        broken = settings.model_copy(
            update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none", "run_migrations": False}
        )
        application = create_app(broken)
        async with LifespanManager(application):
            application.state.lobby.broadcaster = broadcaster
            transport = httpx.ASGITransport(app=application)
            headers = {"X-Internal-Token": broken.internal_auth_token}
            async with httpx.AsyncClient(transport=transport, base_url="http://lobby", headers=headers) as client:
                yield client

    async def test_http_answers_503(self, down_client) -> None:
        response = await down_client.post("/lobbies", headers=as_("d1"))
        assert (response.status_code, error_code(response)) == (503, "service_unavailable")
        response = await down_client.get(f"/lobbies/{uuid.uuid4()}", headers=as_("d1"))  # the hot read's own path
        assert (response.status_code, error_code(response)) == (503, "service_unavailable")

    @pytest.mark.parametrize(
        ("event", "data"), [("lobby.create", {}), ("device.disconnected", {}), ("lobby.get", {"code": "ZZZZ22"})]
    )
    async def test_events_answer_service_unavailable(self, down_client, event, data) -> None:
        body = {"event": event, "request_id": "r", "device_id": "d1", "data": data}
        response = await down_client.post("/gateway/handle", json=body)
        assert response.status_code == 200
        assert response.json()["error"]["code"] == "service_unavailable"


class TestOpenApi:
    async def test_documents_the_device_header_on_every_lobby_endpoint(self, client) -> None:
        spec = (await client.get("/openapi.json")).json()
        paths = spec["paths"].items()
        lobby_ops = [(path, op) for path, ops in paths if path.startswith("/lobbies") for op in ops.values()]
        assert len(lobby_ops) == 9
        for path, op in lobby_ops:
            headers = {p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"}
            assert "x-device-id" in headers, path
