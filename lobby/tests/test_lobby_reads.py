"""`lobby.get` reads without the ORM (`lobby_reads`): the same views the ORM load gives, in every shape a
lobby takes (roles, a room snapshot, a participant who left, closed lobbies sharing a code)."""

from __future__ import annotations

import uuid
from typing import Any

from sonalyze_lobby import lobby_reads, service
from sonalyze_lobby.models import LobbyState, Role
from sonalyze_lobby.schemas import LobbySummary, LobbyView, RoleAssign, Room, RoomSnapshotShare

ROOM = {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}


async def orm_view(sessionmaker: Any, lobby_id: uuid.UUID) -> LobbyView:
    async with sessionmaker() as session:
        return LobbyView.of(await service.get_lobby(session, lobby_id))


class TestRowsGiveTheOrmView:
    async def test_a_lobby_with_roles_a_snapshot_and_a_participant_who_left(
        self, run, devices, rows, sessionmaker
    ) -> None:
        admin, speaker, gone = devices(3)
        view = await run(admin, service.create_lobby)
        for device in (speaker, gone):
            await run(device, service.join_lobby, view.code)
        await run(admin, service.assign_role, RoleAssign(lobby_id=view.lobby_id, target_device_id=speaker,
                                                         role=Role.SPEAKER, role_slot_id="s1", role_slot_label="Left"))  # fmt: skip
        await run(
            admin,
            service.share_room_snapshot,
            RoomSnapshotShare(lobby_id=view.lobby_id, room=Room.model_validate(ROOM)),
        )
        await run(gone, service.leave_lobby, view.lobby_id)

        expected = await orm_view(sessionmaker, view.lobby_id)
        by_id = await lobby_reads.lobby_by_id(rows, view.lobby_id)
        by_code = await lobby_reads.lobby_by_code(rows, view.code)
        assert by_id is not None and by_code == by_id
        assert by_id == expected
        assert [p.device_id for p in by_id.participants] == [admin, speaker, gone]  # in the order they joined
        assert expected.room_snapshot is not None and expected.participants[1].role is Role.SPEAKER
        assert LobbySummary.of(by_id).participant_count == 2

    async def test_a_code_finds_the_open_lobby_before_closed_ones_and_a_closed_one_alone(
        self, run, devices, rows
    ) -> None:
        first, second, third = devices(3)
        closed = await run(first, service.create_lobby)
        await run(first, service.leave_lobby, closed.lobby_id)
        closed_view = await lobby_reads.lobby_by_code(rows, closed.code)
        assert closed_view is not None and closed_view.state is LobbyState.CLOSED
        assert closed_view.participants[0].device_id == first  # a closed lobby keeps its past participants
        reopened = await run(second, service.create_lobby, new_code=lambda: closed.code)
        assert (await lobby_reads.lobby_by_code(rows, closed.code)).lobby_id == reopened.lobby_id
        await run(second, service.leave_lobby, reopened.lobby_id)
        again = await run(third, service.create_lobby, new_code=lambda: closed.code)
        assert (await lobby_reads.lobby_by_code(rows, closed.code)).lobby_id == again.lobby_id

    async def test_unknown_lobbies_are_none(self, rows) -> None:
        assert await lobby_reads.lobby_by_id(rows, uuid.uuid4()) is None
        assert await lobby_reads.lobby_by_code(rows, "ZZZZ22") is None
