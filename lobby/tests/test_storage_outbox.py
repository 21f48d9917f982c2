"""The transactional outbox: a lobby's storage record commits with its change (both or neither), the
relay moves committed rows into the delivery outbox exactly once (two replicas too) and a real storage
process receives them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sonalyze_db import RowReader
from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.history import StorageRelay
from sonalyze_lobby.models import StorageOutboxRow
from sonalyze_protocol.storage_client import StorageClient, StorageRecorder
from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite


@pytest.fixture(scope="module")
async def storage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The storage service as a real process (SQLite); its base URL."""
    base = tmp_path_factory.mktemp("storage")
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data", state_dir=base / "state", services=("storage",), internal_auth_token=""
    )
    running: Suite
    async with running_suite(config, base / "logs", 60.0) as running:
        yield running.config.url("storage")


@pytest.fixture
async def relays(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> AsyncIterator[Any]:
    """``await relays(storage_url, "a")``: a relay (not started) into its own outbox file; closed after the test."""
    opened: list[StorageRecorder] = []

    async def make(storage_url: str, name: str = "a") -> StorageRelay:
        recorder = await StorageRecorder.open("lobby", storage_url=storage_url, outbox_dir=tmp_path / name)
        opened.append(recorder)
        database = SimpleNamespace(sessionmaker=sessionmaker, read_sessionmaker=sessionmaker)
        return StorageRelay(database, recorder)  # type: ignore[arg-type]

    yield make
    for recorder in opened:
        await recorder.aclose(drain_timeout_s=0)


async def rows_of(sessionmaker: async_sessionmaker[AsyncSession], lobby_id: uuid.UUID) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(StorageOutboxRow).order_by(StorageOutboxRow.id))).all()
        return [(r.kind, r.key) for r in rows if r.key.startswith(str(lobby_id))]


def context(session: AsyncSession, device_id: str, settings: Any, broadcaster: Any, relay: StorageRelay) -> Any:
    return LobbyContext(device_id, None, session, RowReader(session.bind), settings, broadcaster, history=relay)


class TestTransactionalOutbox:
    async def test_the_record_commits_with_the_change_and_reaches_storage(
        self, storage: str, relays: Any, sessionmaker: Any, settings: Any, broadcaster: Any, devices: Any
    ) -> None:
        admin, guest = devices(2)
        relay = await relays(storage)
        async with sessionmaker() as session:
            view = await service.create_lobby(context(session, admin, settings, broadcaster, relay))
        async with sessionmaker() as session:
            await service.join_lobby(context(session, guest, settings, broadcaster, relay), view.code)
        # committed with the change, before any background work: a crash now loses nothing
        lobby_id = str(view.lobby_id)
        assert await rows_of(sessionmaker, view.lobby_id) == [
            ("lobby", lobby_id),
            ("participant", f"{lobby_id}/{admin}"),
            ("lobby", lobby_id),
            ("participant", f"{lobby_id}/{admin}"),
            ("participant", f"{lobby_id}/{guest}"),
        ]
        assert await relay.move() >= 5
        assert await rows_of(sessionmaker, view.lobby_id) == []
        assert await relay.recorder.outbox.flush(20.0)
        async with httpx.AsyncClient() as http:
            client = StorageClient(storage, http)
            lobbies = [r for r in await client.list_all("lobby") if r["lobby_id"] == lobby_id]
            participants = [r["device_id"] for r in await client.list_all("participant") if r["lobby_id"] == lobby_id]
        assert [(r["code"], r["status"], r["admin_device_id"]) for r in lobbies] == [(view.code, "open", admin)]
        assert sorted(participants) == sorted([admin, guest])

    async def test_a_change_that_does_not_commit_leaves_no_record(
        self, relays: Any, sessionmaker: Any, settings: Any, broadcaster: Any, devices: Any
    ) -> None:
        (admin,) = devices(1)
        relay = await relays("http://127.0.0.1:9")  # nothing is delivered in this test
        async with sessionmaker() as session:
            view = await service.create_lobby(context(session, admin, settings, broadcaster, relay))
        await relay.move()
        async with sessionmaker() as session:
            ctx = context(session, admin, settings, broadcaster, relay)

            async def crash() -> None:  # the process dies between the use case's writes and its commit
                await session.rollback()
                raise RuntimeError("crashed before the commit")

            session.commit = crash  # type: ignore[method-assign]
            with pytest.raises(RuntimeError, match="crashed"):
                await service.leave_lobby(ctx, view.lobby_id)
        assert await rows_of(sessionmaker, view.lobby_id) == []
        async with sessionmaker() as session:
            await service.leave_lobby(context(session, admin, settings, broadcaster, relay), view.lobby_id)
        assert [kind for kind, _ in await rows_of(sessionmaker, view.lobby_id)] == ["lobby", "participant"]
        await relay.move()

    async def test_two_relays_move_each_row_once(
        self, relays: Any, sessionmaker: Any, settings: Any, broadcaster: Any, devices: Any
    ) -> None:
        relay_a = await relays("http://127.0.0.1:9", "a")  # storage away: moved entries stay pending
        relay_b = await relays("http://127.0.0.1:9", "b")
        await relay_a.move()
        admins = devices(40)
        for admin in admins:
            async with sessionmaker() as session:
                await service.create_lobby(context(session, admin, settings, broadcaster, relay_a))
        moved = await asyncio.gather(relay_a.move(), relay_b.move(), relay_a.move(), relay_b.move())
        assert sum(moved) == 2 * len(admins)  # a lobby and its admin each
        pending = [(await relay.recorder.outbox.counts())[0] for relay in (relay_a, relay_b)]
        assert sum(pending) == 2 * len(admins)
        assert await relay_a.waiting() == 0
