"""Reads never wait for a writer: while one transaction holds the write lock, ``lobby.get``, the HTTP
GETs and ``/health`` answer, and a second writer waits its turn (SQLite: WAL, deferred reads on their
own connections; PostgreSQL: row locks only stop writers)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sonalyze_lobby import service

READ_WAIT_S = 5.0  # far below SQLite's 30 s busy timeout, which a read taking the write lock would wait


class TestReadsBesideAWriter:
    async def test_reads_answer_while_a_writer_holds_the_lock(self, app, client, handle, devices) -> None:
        admin, guest = devices(2)
        created = (await handle(admin, "lobby.create"))["data"]
        lobby_id = created["lobby_id"]
        async with app.state.lobby.database.sessionmaker() as writer:
            # the write lock, held until commit (SQLite: BEGIN IMMEDIATE on the writer connection)
            await service.get_lobby(writer, uuid.UUID(lobby_id), for_update=True)
            join = asyncio.create_task(handle(guest, "lobby.join", {"code": created["code"]}))
            by_code = await asyncio.wait_for(handle(guest, "lobby.get", {"code": created["code"]}), READ_WAIT_S)
            by_id = await asyncio.wait_for(
                client.get(f"/lobbies/{lobby_id}", headers={"X-Device-Id": admin}), READ_WAIT_S
            )
            health = await asyncio.wait_for(client.get("/health"), READ_WAIT_S)
            await asyncio.sleep(0.3)
            join_waited = not join.done()
            await writer.commit()
        joined = await asyncio.wait_for(join, READ_WAIT_S)
        assert by_code["data"]["lobby_id"] == lobby_id
        assert by_id.status_code == 200 and by_id.json()["lobby_id"] == lobby_id
        assert health.status_code == 200
        assert join_waited  # the writer really held the lock: another write had to wait
        assert [p["device_id"] for p in joined["data"]["participants"]] == [admin, guest]

    async def test_a_read_session_cannot_write(self, app, devices) -> None:
        """On SQLite the read engine's connections are query_only: a use case routed there by mistake fails
        loudly instead of taking the write lock unseen."""
        if app.state.lobby.database.read_engine is app.state.lobby.database.engine:
            pytest.skip("PostgreSQL: one engine serves reads and writes")
        (device,) = devices(1)
        async with app.state.lobby.context(device, None, read_only=True) as ctx:
            try:
                await service.create_lobby(ctx)
            except Exception as exc:
                assert "readonly" in str(exc).lower() or "read-only" in str(exc).lower(), exc
            else:
                raise AssertionError("a lobby was created through the read engine")
