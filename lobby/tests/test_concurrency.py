"""Many devices at once: no lost joins, no duplicate participants, no duplicate codes.

On PostgreSQL these run truly in parallel (one connection per task, rows locked); on SQLite the
transactions queue on the write lock, which the test proves is enough.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from sonalyze_lobby import presence, service
from sonalyze_lobby.codes import generate_code
from sonalyze_lobby.models import LobbyEvent, LobbyState, Participant, ParticipantStatus
from sonalyze_lobby.schemas import LobbyGet


class TestConcurrentJoins:
    async def test_fifty_devices_join_one_lobby_at_once(self, run, devices, sessionmaker, gateway) -> None:
        admin, *guests = devices(51)
        view = await run(admin, service.create_lobby)
        results = await asyncio.gather(*(run(g, service.join_lobby, view.code.lower()) for g in guests))
        assert all(r.lobby_id == view.lobby_id for r in results)
        final = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        ids = [p.device_id for p in final.participants]
        assert len(ids) == 51 and len(set(ids)) == 51
        assert set(ids) == {admin, *guests}
        async with sessionmaker() as session:
            rows = await session.scalar(
                select(func.count()).select_from(Participant).where(Participant.lobby_id == view.lobby_id)
            )
            joined_events = await session.scalar(
                select(func.count())
                .select_from(LobbyEvent)
                .where(LobbyEvent.lobby_id == view.lobby_id, LobbyEvent.type == "participant_joined")
            )
        assert rows == 51
        assert joined_events == 50
        # the last joiner's push lists everyone: each join saw all the joins committed before it
        sizes = sorted(len(p.data["lobby"]["participants"]) for p in gateway.pushes)
        assert sizes == list(range(2, 52))

    async def test_one_device_joining_many_times_at_once_is_one_participant(self, run, devices) -> None:
        admin, guest = devices(2)
        view = await run(admin, service.create_lobby)
        await asyncio.gather(*(run(guest, service.join_lobby, view.code) for _ in range(20)))
        final = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert [p.device_id for p in final.participants] == [admin, guest]
        assert final.participants[1].status is ParticipantStatus.JOINED

    async def test_guests_leaving_at_once_with_the_admin_close_the_lobby(self, run, devices) -> None:
        admin, *guests = devices(11)
        view = await run(admin, service.create_lobby)
        for guest in guests:
            await run(guest, service.join_lobby, view.code)
        await asyncio.gather(*(run(d, service.leave_lobby, view.lobby_id) for d in [*guests, admin]))
        final = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
        assert final.state is LobbyState.CLOSED
        assert {p.status for p in final.participants} == {ParticipantStatus.LEFT}


class TestConcurrentCreates:
    async def test_two_hundred_lobbies_get_distinct_codes(self, run, devices) -> None:
        creators = devices(200)
        views = await asyncio.gather(*(run(d, service.create_lobby) for d in creators))
        assert len({v.lobby_id for v in views}) == 200
        assert len({v.code for v in views}) == 200

    async def test_forced_collisions_under_concurrency_are_retried(self, run, devices) -> None:
        """Every creator is first offered the same code: the database lets one through, the rest retry."""
        creators = devices(20)
        shared = "WXYZ23"

        def offering_shared_first():
            offered = iter([shared])

            def new_code() -> str:
                return next(offered, None) or generate_code()

            return new_code

        views = await asyncio.gather(
            *(run(d, service.create_lobby, new_code=offering_shared_first()) for d in creators)
        )
        codes = [v.code for v in views]
        assert len(set(codes)) == 20
        assert codes.count(shared) == 1


class TestJoinRacingDisconnect:
    async def test_a_disconnect_during_a_join_is_never_lost(self, run, devices) -> None:
        """The phone joins and drops at the same moment: whichever runs first, it ends up disconnected."""
        (admin,) = devices(1)
        view = await run(admin, service.create_lobby)
        for phone in devices(15):
            await run(phone, presence.set_connected, True)
            await asyncio.gather(run(phone, service.join_lobby, view.code), run(phone, presence.set_connected, False))
            final = await run(admin, service.get_lobby_view, LobbyGet(lobby_id=view.lobby_id))
            (row,) = [p for p in final.participants if p.device_id == phone]
            assert row.connected is False, phone
