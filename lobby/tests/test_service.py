"""The lobby's rules in the service layer, on the real database (SQLite, or PostgreSQL via TEST_DATABASE_URL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sonalyze_lobby import presence, service
from sonalyze_lobby.codes import CODE_ALPHABET, CODE_LENGTH
from sonalyze_lobby.models import Lobby, LobbyEvent, LobbyState, Participant, ParticipantStatus, Role
from sonalyze_lobby.schemas import LobbyGet, ProfileUpdate, RoleAssign, Room, RoomSnapshotShare, StepUpdate
from sonalyze_protocol.errors import AppError, BadRequest, Conflict, Forbidden, InvalidState, NotFound

ROOM = {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}


def role(lobby_id: Any, target: str, role_: str, slot: str | None = None, label: str | None = None) -> RoleAssign:
    return RoleAssign(lobby_id=lobby_id, target_device_id=target, role=role_, role_slot_id=slot, role_slot_label=label)


def snapshot(lobby_id: Any, room: dict[str, Any] | None = None) -> RoomSnapshotShare:
    return RoomSnapshotShare(lobby_id=lobby_id, room=Room.model_validate(room or ROOM))


def member(view: Any, device_id: str) -> Any:
    return next(p for p in view.participants if p.device_id == device_id)


@pytest.fixture
def lobby_of(run: Callable[..., Any], devices: Callable[[int], list[str]]) -> Callable[..., Any]:
    """``view, ids = await lobby_of(3)``: a lobby created by ids[0] that ids[1:] joined."""

    async def make(n: int) -> tuple[Any, list[str]]:
        ids = devices(n)
        view = await run(ids[0], service.create_lobby)
        for device_id in ids[1:]:
            view = await run(device_id, service.join_lobby, view.code)
        return view, ids

    return make


class TestCreateLobby:
    async def test_creator_is_admin_and_first_participant(self, run, devices) -> None:
        (admin,) = devices(1)
        view = await run(admin, service.create_lobby)
        assert view.state is LobbyState.OPEN
        assert view.creator_device_id == admin
        assert [(p.device_id, p.role, p.status, p.connected) for p in view.participants] == [
            (admin, Role.NONE, ParticipantStatus.JOINED, True)
        ]
        assert view.room_snapshot is None

    async def test_code_has_six_characters_without_look_alikes(self, run, devices) -> None:
        for device_id in devices(20):
            code = (await run(device_id, service.create_lobby)).code
            assert len(code) == CODE_LENGTH
            assert set(code) <= set(CODE_ALPHABET)
            assert not set(code) & set("01OIL")

    async def test_code_collision_is_retried(self, run, devices) -> None:
        first, second = devices(2)
        taken = (await run(first, service.create_lobby)).code
        fresh = _unused_code()
        offered = [taken, taken, fresh]
        codes: Iterator[str] = iter(offered)
        view = await run(second, service.create_lobby, new_code=lambda: next(codes))
        assert view.code == fresh
        assert view.creator_device_id == second

    async def test_gives_up_after_repeated_collisions(self, run, devices) -> None:
        first, second = devices(2)
        taken = (await run(first, service.create_lobby)).code
        with pytest.raises(Conflict, match="free lobby code"):
            await run(second, service.create_lobby, new_code=lambda: taken)

    async def test_writes_a_created_event(self, run, devices, sessionmaker) -> None:
        (admin,) = devices(1)
        view = await run(admin, service.create_lobby)
        async with sessionmaker() as session:
            events = (await session.scalars(select(LobbyEvent).where(LobbyEvent.lobby_id == view.lobby_id))).all()
        assert [(e.type, e.device_id) for e in events] == [("lobby_created", admin)]


def _unused_code() -> str:
    """A random well-formed code (a clash with an existing lobby is a 1 in ~1e8 chance per lobby)."""
    return "".join(CODE_ALPHABET[uuid.uuid4().int % len(CODE_ALPHABET)] for _ in range(CODE_LENGTH))


class TestCodeUniquenessInDatabase:
    async def test_database_refuses_a_second_open_lobby_with_the_same_code(self, run, devices, sessionmaker) -> None:
        first, second = devices(2)
        code = (await run(first, service.create_lobby)).code
        async with sessionmaker() as session:
            session.add(Lobby(code=code, creator_device_id=second))
            with pytest.raises(IntegrityError):
                await session.commit()

    async def test_closed_lobby_frees_its_code(self, run, devices, sessionmaker) -> None:
        first, second = devices(2)
        closed = await run(first, service.create_lobby)
        await run(first, service.leave_lobby, closed.lobby_id)
        reused = await run(second, service.create_lobby, new_code=lambda: closed.code)
        assert reused.code == closed.code
        assert reused.lobby_id != closed.lobby_id
        joined = await run(first, service.join_lobby, closed.code)
        assert joined.lobby_id == reused.lobby_id


class TestJoinLobby:
    async def test_code_in_any_case_with_spaces(self, run, lobby_of, devices) -> None:
        view, (admin,) = await lobby_of(1)
        (guest,) = devices(1)
        joined = await run(guest, service.join_lobby, f"  {view.code.lower()}\t")
        assert joined.lobby_id == view.lobby_id
        assert [p.device_id for p in joined.participants] == [admin, guest]

    async def test_joining_twice_keeps_one_participant_and_tells_nobody(self, run, lobby_of, gateway) -> None:
        view, (_, guest) = await lobby_of(2)
        gateway.clear()
        again = await run(guest, service.join_lobby, view.code)
        assert [p.device_id for p in again.participants].count(guest) == 1
        assert gateway.pushes == []

    async def test_rejoin_after_leaving_restores_the_same_participant(self, run, lobby_of, sessionmaker) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker", "spk_1"))
        await run(guest, service.leave_lobby, view.lobby_id)
        async with sessionmaker() as session:
            before = await session.scalar(select(Participant).where(Participant.device_id == guest))
        rejoined = await run(guest, service.join_lobby, view.code)
        async with sessionmaker() as session:
            rows = (await session.scalars(select(Participant).where(Participant.device_id == guest))).all()
        assert [r.id for r in rows] == [before.id]
        assert rows[0].status is ParticipantStatus.JOINED and rows[0].left_at is None
        assert (member(rejoined, guest).role, member(rejoined, guest).role_slot_id) == (Role.SPEAKER, "spk_1")

    async def test_unknown_code_is_not_found(self, run, devices) -> None:
        (guest,) = devices(1)
        with pytest.raises(NotFound, match="no lobby"):
            await run(guest, service.join_lobby, _unused_code())

    async def test_malformed_code_is_not_found(self, run, devices) -> None:
        (guest,) = devices(1)
        with pytest.raises(NotFound):
            await run(guest, service.join_lobby, "O0I1L!")

    async def test_closed_lobby_is_a_conflict(self, run, lobby_of, devices) -> None:
        view, (admin,) = await lobby_of(1)
        await run(admin, service.leave_lobby, view.lobby_id)
        (guest,) = devices(1)
        with pytest.raises(Conflict, match="closed"):
            await run(guest, service.join_lobby, view.code)

    async def test_everyone_joined_is_told(self, run, lobby_of, devices, gateway) -> None:
        view, (admin, guest) = await lobby_of(2)
        (late,) = devices(1)
        gateway.clear()
        await run(late, service.join_lobby, view.code)
        (push,) = gateway.pushes
        assert push.event == "lobby.updated"
        assert sorted(push.device_ids) == sorted([admin, guest, late])
        assert push.data["type"] == "participant_joined"
        assert push.data["device_id"] == late
        assert push.data["lobby_id"] == str(view.lobby_id)
        assert [p["device_id"] for p in push.data["lobby"]["participants"]] == [admin, guest, late]


class TestLeaveLobby:
    async def test_guest_leaving_tells_the_others(self, run, lobby_of, gateway) -> None:
        view, (admin, guest, other) = await lobby_of(3)
        gateway.clear()
        left = await run(guest, service.leave_lobby, view.lobby_id)
        assert member(left, guest).status is ParticipantStatus.LEFT
        assert left.state is LobbyState.OPEN
        (push,) = gateway.pushes
        assert (push.data["type"], push.data["device_id"]) == ("participant_left", guest)
        assert sorted(push.device_ids) == sorted([admin, guest, other])

    async def test_admin_leaving_closes_the_lobby_for_everyone(self, run, lobby_of, gateway) -> None:
        view, (admin, guest, other) = await lobby_of(3)
        gateway.clear()
        closed = await run(admin, service.leave_lobby, view.lobby_id)
        assert closed.state is LobbyState.CLOSED
        assert {p.status for p in closed.participants} == {ParticipantStatus.LEFT}
        (push,) = gateway.pushes
        assert (push.data["type"], push.data["device_id"]) == ("lobby_closed", admin)
        assert sorted(push.device_ids) == sorted([admin, guest, other])
        assert push.data["lobby"]["state"] == "closed"

    async def test_last_participant_leaving_closes_the_lobby(self, run, lobby_of, sessionmaker) -> None:
        view, (admin,) = await lobby_of(1)
        closed = await run(admin, service.leave_lobby, view.lobby_id)
        assert closed.state is LobbyState.CLOSED
        async with sessionmaker() as session:
            types = (
                await session.scalars(
                    select(LobbyEvent.type).where(LobbyEvent.lobby_id == view.lobby_id).order_by(LobbyEvent.id)
                )
            ).all()
        assert types == ["lobby_created", "participant_left", "lobby_closed"]

    async def test_leaving_twice_changes_nothing(self, run, lobby_of, gateway) -> None:
        view, (_, guest) = await lobby_of(2)
        await run(guest, service.leave_lobby, view.lobby_id)
        gateway.clear()
        again = await run(guest, service.leave_lobby, view.lobby_id)
        assert member(again, guest).status is ParticipantStatus.LEFT
        assert gateway.pushes == []

    async def test_stranger_is_forbidden(self, run, lobby_of, devices) -> None:
        view, _ = await lobby_of(1)
        (stranger,) = devices(1)
        with pytest.raises(Forbidden):
            await run(stranger, service.leave_lobby, view.lobby_id)

    async def test_unknown_lobby_is_not_found(self, run, devices) -> None:
        (device,) = devices(1)
        with pytest.raises(NotFound):
            await run(device, service.leave_lobby, uuid.uuid4())


class TestGetLobby:
    async def test_by_id_and_by_code_give_the_same_view(self, run, lobby_of) -> None:
        view, (_, guest) = await lobby_of(2)
        by_id = await run(guest, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        by_code = await run(guest, service.get_lobby_view, LobbyGet(code=f" {view.code.lower()} "))
        assert by_id == by_code == view

    async def test_an_outsider_sees_code_state_and_count_but_no_device_ids(self, run, lobby_of, devices) -> None:
        view, members = await lobby_of(3)
        (outsider,) = devices(1)
        by_id = await run(outsider, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        by_code = await run(outsider, service.get_lobby_view, LobbyGet(code=view.code))
        assert by_id == by_code
        assert by_id.model_dump(mode="json") == {
            "lobby_id": str(view.lobby_id), "code": view.code, "state": "open", "participant_count": 3,
        }  # fmt: skip
        assert not any(device in by_id.model_dump_json() for device in members)

    async def test_a_participant_who_left_still_sees_the_whole_view(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(guest, service.leave_lobby, view.lobby_id)
        seen = await run(guest, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert [p.device_id for p in seen.participants] == [admin, guest]

    async def test_unknown_id_is_not_found(self, run, devices) -> None:
        (anyone,) = devices(1)
        with pytest.raises(NotFound):
            await run(anyone, service.get_lobby_view, LobbyGet(lobby_id=uuid.uuid4()))


class TestStartLobby:
    async def test_admin_starts_and_everyone_is_told(self, run, lobby_of, gateway) -> None:
        view, (admin, guest) = await lobby_of(2)
        gateway.clear()
        started = await run(admin, service.start_lobby, view.lobby_id)
        assert started.state is LobbyState.MEASUREMENT_RUNNING
        (push,) = gateway.pushes
        assert push.data["type"] == "state_changed"
        assert sorted(push.device_ids) == sorted([admin, guest])

    async def test_guest_is_forbidden(self, run, lobby_of) -> None:
        view, (_, guest) = await lobby_of(2)
        with pytest.raises(Forbidden, match="admin"):
            await run(guest, service.start_lobby, view.lobby_id)

    async def test_starting_twice_is_invalid_state(self, run, lobby_of) -> None:
        view, (admin,) = await lobby_of(1)
        await run(admin, service.start_lobby, view.lobby_id)
        with pytest.raises(InvalidState, match="measurement_running"):
            await run(admin, service.start_lobby, view.lobby_id)


class TestAssignRole:
    async def test_admin_assigns_a_slot_and_everyone_is_told(self, run, lobby_of, gateway) -> None:
        view, (admin, guest) = await lobby_of(2)
        gateway.clear()
        assigned = await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker", "spk_1", "Left"))
        target = member(assigned, guest)
        assert (target.role, target.role_slot_id, target.role_slot_label) == (Role.SPEAKER, "spk_1", "Left")
        (push,) = gateway.pushes
        assert (push.data["type"], push.data["device_id"]) == ("role_assigned", guest)
        assert sorted(push.device_ids) == sorted([admin, guest])

    async def test_admin_may_assign_itself(self, run, lobby_of) -> None:
        view, (admin,) = await lobby_of(1)
        assigned = await run(admin, service.assign_role, role(view.lobby_id, admin, "microphone", "mic_1"))
        assert member(assigned, admin).role is Role.MICROPHONE

    async def test_guest_is_forbidden(self, run, lobby_of) -> None:
        view, (_, guest) = await lobby_of(2)
        with pytest.raises(Forbidden):
            await run(guest, service.assign_role, role(view.lobby_id, guest, "speaker"))

    async def test_target_that_never_joined_is_not_found(self, run, lobby_of, devices) -> None:
        view, (admin,) = await lobby_of(1)
        (stranger,) = devices(1)
        with pytest.raises(NotFound, match="not a joined participant"):
            await run(admin, service.assign_role, role(view.lobby_id, stranger, "speaker"))

    async def test_target_that_left_is_not_found(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(guest, service.leave_lobby, view.lobby_id)
        with pytest.raises(NotFound):
            await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker"))

    async def test_slot_held_by_another_joined_participant_is_a_conflict(self, run, lobby_of) -> None:
        view, (admin, first, second) = await lobby_of(3)
        await run(admin, service.assign_role, role(view.lobby_id, first, "speaker", "spk_1"))
        with pytest.raises(Conflict, match="spk_1"):
            await run(admin, service.assign_role, role(view.lobby_id, second, "microphone", "spk_1"))

    async def test_same_slot_in_another_lobby_is_fine(self, run, lobby_of) -> None:
        one, (admin_one,) = await lobby_of(1)
        two, (admin_two,) = await lobby_of(1)
        await run(admin_one, service.assign_role, role(one.lobby_id, admin_one, "speaker", "spk_1"))
        assigned = await run(admin_two, service.assign_role, role(two.lobby_id, admin_two, "speaker", "spk_1"))
        assert member(assigned, admin_two).role_slot_id == "spk_1"

    async def test_reassigning_the_holder_its_own_slot_is_fine(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker", "spk_1"))
        again = await run(admin, service.assign_role, role(view.lobby_id, guest, "microphone", "spk_1"))
        assert (member(again, guest).role, member(again, guest).role_slot_id) == (Role.MICROPHONE, "spk_1")

    async def test_slot_of_a_participant_who_left_is_taken_over(self, run, lobby_of) -> None:
        view, (admin, gone, new) = await lobby_of(3)
        await run(admin, service.assign_role, role(view.lobby_id, gone, "speaker", "spk_1"))
        await run(gone, service.leave_lobby, view.lobby_id)
        assigned = await run(admin, service.assign_role, role(view.lobby_id, new, "speaker", "spk_1"))
        assert member(assigned, new).role_slot_id == "spk_1"
        assert (member(assigned, gone).role, member(assigned, gone).role_slot_id) == (Role.NONE, None)

    async def test_role_none_clears_the_slot(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker", "spk_1", "Left"))
        cleared = await run(admin, service.assign_role, role(view.lobby_id, guest, "none", "spk_1"))
        target = member(cleared, guest)
        assert (target.role, target.role_slot_id, target.role_slot_label) == (Role.NONE, None, None)

    async def test_closed_lobby_is_invalid_state(self, run, lobby_of) -> None:
        view, (admin,) = await lobby_of(1)
        await run(admin, service.leave_lobby, view.lobby_id)
        with pytest.raises(InvalidState, match="closed"):
            await run(admin, service.assign_role, role(view.lobby_id, admin, "speaker"))

    async def test_running_lobby_is_invalid_state(self, run, lobby_of) -> None:
        view, (admin,) = await lobby_of(1)
        await run(admin, service.start_lobby, view.lobby_id)
        with pytest.raises(InvalidState):
            await run(admin, service.assign_role, role(view.lobby_id, admin, "speaker"))


class TestRoomSnapshot:
    async def test_stored_returned_by_get_and_sent_to_the_others(self, run, lobby_of, gateway) -> None:
        view, (admin, guest, other) = await lobby_of(3)
        room = {**ROOM, "materials": {"floor": "carpet"}, "positions": [{"slot_id": "spk_1", "position_m": [1, 1]}]}
        gateway.clear()
        shared = await run(guest, service.share_room_snapshot, snapshot(view.lobby_id, room))
        fetched = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert shared.room_snapshot == fetched.room_snapshot
        assert fetched.room_snapshot["vertices"] == [[0.0, 0.0], [5.0, 0.0], [5.0, 4.0], [0.0, 4.0]]
        assert fetched.room_snapshot["materials"] == {"floor": "carpet"}
        snapshots = [p for p in gateway.pushes if p.event == "lobby.room_snapshot"]
        assert len(snapshots) == 1
        assert sorted(snapshots[0].device_ids) == sorted([admin, other])
        assert snapshots[0].data == {"lobby_id": str(view.lobby_id), "device_id": guest, "room": shared.room_snapshot}
        assert gateway.types_to(guest) == ["room_snapshot"]

    async def test_latest_snapshot_wins(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(admin, service.share_room_snapshot, snapshot(view.lobby_id))
        await run(guest, service.share_room_snapshot, snapshot(view.lobby_id, {**ROOM, "height_m": 3.0}))
        fetched = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert fetched.room_snapshot["height_m"] == 3.0

    async def test_stranger_is_forbidden(self, run, lobby_of, devices) -> None:
        view, _ = await lobby_of(1)
        (stranger,) = devices(1)
        with pytest.raises(Forbidden):
            await run(stranger, service.share_room_snapshot, snapshot(view.lobby_id))

    async def test_too_large_is_bad_request(self, run, lobby_of, settings) -> None:
        view, (admin,) = await lobby_of(1)
        big = {**ROOM, "materials": {f"wall_{i}": "x" * 100 for i in range(settings.room_snapshot_max_bytes // 100)}}
        with pytest.raises(BadRequest, match="limit"):
            await run(admin, service.share_room_snapshot, snapshot(view.lobby_id, big))
        fetched = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert fetched.room_snapshot is None


# the app's room model (spec phone-app.md section 5): kept exactly as sent
APP_ROOM = {
    "rooms": [{"dimensions": {"width": 5, "depth": 4, "height": 2.5},
               "walls": [{"start": {"x": 0, "z": 0}, "end": {"x": 5, "z": 0}}],
               "materials": {"wall": {"material_id": "plaster", "absorption": 0.1, "scattering": 0.1}},
               "furniture": [{"id": "f1", "type": "sofa", "position": {"x": 1, "y": 0, "z": 1}, "rotation": 0,
                              "dimensions": {"width": 2, "depth": 1, "height": 0.8}}]}],
    "speakers": [{"position": {"x": 1, "y": 1.2, "z": 1}}],
}  # fmt: skip


class TestAppRoomModel:
    async def test_app_room_is_stored_and_sent_as_sent(self, run, lobby_of, gateway) -> None:
        view, (admin, guest) = await lobby_of(2)
        gateway.clear()
        body = RoomSnapshotShare.model_validate({"lobby_id": str(view.lobby_id), "room": APP_ROOM})
        await run(admin, service.share_room_snapshot, body)
        fetched = await run(guest, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert fetched.room_snapshot == APP_ROOM
        (pushed,) = [p for p in gateway.pushes if p.event == "lobby.room_snapshot"]
        assert pushed.device_ids == [guest] and pushed.data["room"] == APP_ROOM

    @pytest.mark.parametrize("room", [[1, 2], "room", 3, None, {"vertices": [[0, 0]], "height_m": 2}])
    def test_anything_but_an_object_or_a_broken_room_of_ours_is_refused(self, room: Any) -> None:
        with pytest.raises(ValueError):
            RoomSnapshotShare.model_validate({"lobby_id": str(uuid.uuid4()), "room": room})

    async def test_app_room_over_the_size_cap_is_bad_request(self, run, lobby_of, settings) -> None:
        view, (admin,) = await lobby_of(1)
        big = {**APP_ROOM, "notes": "x" * settings.room_snapshot_max_bytes}
        with pytest.raises(BadRequest, match="limit"):
            await run(admin, service.share_room_snapshot,
                      RoomSnapshotShare.model_validate({"lobby_id": str(view.lobby_id), "room": big}))  # fmt: skip


class TestHostStepAndProfile:
    async def test_admin_step_and_profile_are_pushed_to_the_others_and_kept_for_late_joiners(
        self, run, lobby_of, gateway, devices
    ) -> None:
        view, (admin, guest) = await lobby_of(2)
        gateway.clear()
        await run(admin, service.update_step, StepUpdate(lobby_id=view.lobby_id, step_index=2))
        await run(admin, service.update_profile, ProfileUpdate(lobby_id=view.lobby_id, profile_id="high_end"))
        pushed = [(p.event, p.device_ids, p.data) for p in gateway.pushes]
        lobby_id = str(view.lobby_id)
        assert pushed == [
            ("lobby.step_update", [guest], {"lobby_id": lobby_id, "device_id": admin, "step_index": 2}),
            ("lobby.profile_update", [guest], {"lobby_id": lobby_id, "device_id": admin, "profile_id": "high_end"}),
        ]
        (late,) = devices(1)
        joined = await run(late, service.join_lobby, view.code)
        assert (joined.step_index, joined.profile_id) == (2, "high_end")
        assert joined.admin_device_id == admin == joined.creator_device_id

    async def test_guest_is_forbidden(self, run, lobby_of) -> None:
        view, (_, guest) = await lobby_of(2)
        with pytest.raises(Forbidden):
            await run(guest, service.update_step, StepUpdate(lobby_id=view.lobby_id, step_index=1))
        with pytest.raises(Forbidden):
            await run(guest, service.update_profile, ProfileUpdate(lobby_id=view.lobby_id, profile_id="x"))

    @pytest.mark.parametrize("data", [{"step_index": -1}, {"step_index": "2"}, {"step_index": 1.5}, {}])
    def test_bad_step_index_is_refused(self, data: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            StepUpdate.model_validate({"lobby_id": str(uuid.uuid4()), **data})


class TestConnectionStatus:
    async def test_disconnect_and_reconnect_update_every_joined_lobby(self, run, lobby_of, gateway) -> None:
        one, (admin_one, phone) = await lobby_of(2)
        two, (admin_two,) = await lobby_of(1)
        await run(phone, service.join_lobby, two.code)
        gateway.clear()
        changed = await run(phone, presence.set_connected, False)
        assert sorted(changed) == sorted([one.lobby_id, two.lobby_id])
        for lobby in (one, two):
            view = await run(phone, service.get_lobby_view, LobbyGet(lobby_id=lobby.lobby_id))
            assert member(view, phone).connected is False
        assert gateway.types_to(admin_one) == ["connection_changed"]
        assert gateway.types_to(admin_two) == ["connection_changed"]
        await run(phone, presence.set_connected, True)
        view = await run(phone, service.get_lobby_view, LobbyGet(lobby_id=one.lobby_id))
        assert member(view, phone).connected is True

    async def test_no_change_no_event(self, run, lobby_of, gateway) -> None:
        _, (_, phone) = await lobby_of(2)
        gateway.clear()
        assert await run(phone, presence.set_connected, True) == []
        assert gateway.pushes == []

    async def test_joining_while_offline_shows_disconnected(self, run, lobby_of, devices) -> None:
        view, _ = await lobby_of(1)
        (phone,) = devices(1)
        await run(phone, presence.set_connected, False)
        joined = await run(phone, service.join_lobby, view.code)
        assert member(joined, phone).connected is False

    async def test_rejoin_takes_the_current_presence(self, run, lobby_of) -> None:
        view, (_, phone) = await lobby_of(2)
        await run(phone, service.leave_lobby, view.lobby_id)
        await run(phone, presence.set_connected, False)
        rejoined = await run(phone, service.join_lobby, view.code)
        assert member(rejoined, phone).connected is False

    async def test_lobbies_left_or_closed_are_untouched(self, run, lobby_of, gateway) -> None:
        left, (_, phone) = await lobby_of(2)
        await run(phone, service.leave_lobby, left.lobby_id)
        closed, (admin,) = await lobby_of(1)
        await run(admin, service.leave_lobby, closed.lobby_id)
        gateway.clear()
        assert await run(phone, presence.set_connected, False) == []
        assert await run(admin, presence.set_connected, False) == []
        assert gateway.pushes == []


class TestEvents:
    async def test_ids_ascend_and_after_filters(self, run, lobby_of) -> None:
        view, (admin, guest) = await lobby_of(2)
        await run(admin, service.assign_role, role(view.lobby_id, guest, "speaker", "spk_1"))
        page = await run(guest, service.list_events, view.lobby_id, 0, 100)
        assert [e.type for e in page.events] == ["lobby_created", "participant_joined", "role_assigned"]
        ids = [e.id for e in page.events]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert page.last_event_id == ids[-1]
        rest = await run(guest, service.list_events, view.lobby_id, ids[0], 100)
        assert [e.id for e in rest.events] == ids[1:]
        none = await run(guest, service.list_events, view.lobby_id, ids[-1], 100)
        assert none.events == [] and none.last_event_id == ids[-1]

    async def test_limit_pages(self, run, lobby_of) -> None:
        view, (admin, _) = await lobby_of(2)
        first = await run(admin, service.list_events, view.lobby_id, 0, 1)
        second = await run(admin, service.list_events, view.lobby_id, first.last_event_id, 1)
        assert [e.type for e in first.events + second.events] == ["lobby_created", "participant_joined"]

    async def test_stranger_is_forbidden(self, run, lobby_of, devices) -> None:
        view, _ = await lobby_of(1)
        (stranger,) = devices(1)
        with pytest.raises(Forbidden):
            await run(stranger, service.list_events, view.lobby_id, 0, 100)

    async def test_former_participant_may_read(self, run, lobby_of) -> None:
        view, (_, guest) = await lobby_of(2)
        await run(guest, service.leave_lobby, view.lobby_id)
        page = await run(guest, service.list_events, view.lobby_id, 0, 100)
        assert page.events[-1].type == "participant_left"


class TestBroadcastFailure:
    async def test_gateway_down_never_fails_a_change(self, run, lobby_of, devices, gateway) -> None:
        view, (admin,) = await lobby_of(1)
        (guest,) = devices(1)
        gateway.failing = True
        joined = await run(guest, service.join_lobby, view.code)
        assigned = await run(admin, service.assign_role, role(view.lobby_id, guest, "microphone", "mic_1"))
        assert member(joined, guest).status is ParticipantStatus.JOINED
        assert member(assigned, guest).role is Role.MICROPHONE
        page = await run(guest, service.list_events, view.lobby_id, 0, 100)
        assert [e.type for e in page.events][-2:] == ["participant_joined", "role_assigned"]

    async def test_pushes_carry_the_internal_token(self, run, lobby_of, gateway, settings) -> None:
        await lobby_of(2)
        assert gateway.tokens and set(gateway.tokens) == {settings.internal_auth_token}


def test_every_error_is_an_app_error() -> None:
    assert all(issubclass(e, AppError) for e in (BadRequest, Conflict, Forbidden, InvalidState, NotFound))
