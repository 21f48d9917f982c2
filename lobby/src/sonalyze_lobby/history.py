"""The lobby's long-term record in the storage service: the lobby and its participants after each change.

A transactional outbox: `record_lobby` adds the writes as `StorageOutboxRow`s to the use case's own
session, so they commit with the change they describe (a rollback or a crash before the commit leaves
neither; after it, both). `StorageRelay` (one per lobby process) moves committed rows, in ``id`` order,
into the lobby's delivery outbox (`sonalyze_protocol.outbox`: backoff, dead letters in ``/health``,
``make replay-dead-letters``) and deletes them in the same database transaction. Rows are claimed with
``FOR UPDATE SKIP LOCKED``, so two replicas never move the same row; a crash between the outbox's own
commit and the row's deletion moves the row again, which storage absorbs (upserts by natural key: lobby
id; lobby id + device id), as it does writing the whole lobby again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_lobby.models import Lobby, StorageOutboxRow
from sonalyze_protocol.json_rule import jsonable
from sonalyze_protocol.logs import device_id_var, request_id_var

if TYPE_CHECKING:
    from sonalyze_db import Database
    from sonalyze_protocol.storage_client import StorageRecorder

logger = logging.getLogger("sonalyze.lobby.history")

MOVE_BATCH: Final = 100
POLL_S: Final = 1.0
"""How often the relay looks for rows nobody woke it for (another replica's, or left by a crash)."""


def _fields(**fields: Any) -> dict[str, Any]:
    return {name: jsonable(value) for name, value in fields.items() if value is not None}


def lobby_writes(lobby: Lobby) -> list[tuple[str, str, dict[str, Any]]]:
    """``(kind, key, payload)`` of the lobby and each participant as they are now, the lobby first
    (storage refuses a participant of an unknown lobby); participants must be loaded."""
    lobby_id = str(lobby.id)
    writes = [
        ("lobby", lobby_id, _fields(lobby_id=lobby_id, code=lobby.code, admin_device_id=lobby.creator_device_id,
                                    status=lobby.state.value, opened_at=lobby.created_at,
                                    closed_at=lobby.closed_at)),
    ]  # fmt: skip
    for p in lobby.participants:
        payload = _fields(lobby_id=lobby_id, device_id=p.device_id, role=p.role.value, role_slot_id=p.role_slot_id,
                          joined_at=p.joined_at, left_at=p.left_at)  # fmt: skip
        writes.append(("participant", f"{lobby_id}/{p.device_id}", payload))
    return writes


async def record_lobby(session: AsyncSession, relay: StorageRelay | None, lobby: Lobby) -> None:
    """Add the lobby's storage writes to ``session`` (call before its commit); nothing when recording is off."""
    if relay is None:
        return
    await session.flush()  # defaults (created_at, joined_at) are set at the flush
    request_id = request_id_var.get()
    device_id = device_id_var.get()
    session.add_all(
        StorageOutboxRow(kind=kind, key=key, payload=payload, request_id=request_id, device_id=device_id)
        for kind, key, payload in lobby_writes(lobby)
    )
    event.listen(session.sync_session, "after_commit", relay.wake_after_commit, once=True)


class StorageRelay:
    """Moves committed `StorageOutboxRow`s into ``recorder``'s outbox; ``start`` / ``aclose``."""

    def __init__(self, database: Database, recorder: StorageRecorder, *, poll_s: float = POLL_S) -> None:
        self._database = database
        self.recorder = recorder
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake_after_commit(self, _session: Any) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lobby-storage-relay")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()  # a move cut short rolls back: its rows stay for the next run
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def waiting(self) -> int:
        """Rows committed and not yet moved into the outbox."""
        async with self._database.read_sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(StorageOutboxRow)) or 0)

    async def move(self) -> int:
        """Move every committed row (in batches); returns how many."""
        moved = 0
        while count := await self._move_batch():
            moved += count
        return moved

    async def _move_batch(self) -> int:
        async with self._database.read_sessionmaker() as session:  # idle: no writer lock taken (SQLite)
            if await session.scalar(select(StorageOutboxRow.id).limit(1)) is None:
                return 0
        async with self._database.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(StorageOutboxRow)
                    .order_by(StorageOutboxRow.id)
                    .limit(MOVE_BATCH)
                    .with_for_update(skip_locked=True)  # another replica's claimed rows are skipped
                )
            ).all()
            for row in rows:
                request_token = request_id_var.set(row.request_id)
                device_token = device_id_var.set(row.device_id)
                try:
                    await self.recorder.outbox.put(row.kind, row.key, row.payload)
                finally:
                    request_id_var.reset(request_token)
                    device_id_var.reset(device_token)
            if rows:
                await session.execute(delete(StorageOutboxRow).where(StorageOutboxRow.id.in_([r.id for r in rows])))
            await session.commit()
            return len(rows)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.move()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or the outbox file: the rows stay, try again later
                logger.exception("moving storage writes into the outbox failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
