"""`Outbox`: a durable local queue in front of a remote write, delivered in order with capped backoff.

A write is first committed to a small SQLite file (WAL, ``synchronous=FULL``: on disk before `put`
returns), then one background task hands entries to a ``deliver`` coroutine strictly in the order they
were put. The deliverer answers with an outcome:

    DELIVERED   done, the entry is removed
    RETRY       the target is away (down, timeout, 5xx): wait with exponential backoff, try the same entry
    CONFLICT    the target is not ready for it (a parent missing): retried like RETRY, at most
                ``max_conflict_attempts`` times, then set aside as dead
    REJECTED    the target will never take it (invalid): set aside as dead at once, logged as an error

Nothing is lost while the target is down: entries wait on disk, across restarts, and the queue
resumes where it stopped. An entry can be delivered more than once (a crash between the target's
commit and our removal), so the target must treat writes as idempotent upserts. Dead entries stay in
the file for inspection (`dead_entries`) and can be queued again (`requeue_dead`): each service's
``/health`` shows ``outbox: {"pending", "dead"}``, and after a fix ``python -m sonalyze_protocol.outbox_replay
[OUTBOX_DIR]`` (``make replay-dead-letters``) queues every dead entry of every service again. A running
service picks such entries up within `IDLE_POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar

from sonalyze_protocol.logs import device_id_var, request_id_var

logger = logging.getLogger("sonalyze.outbox")

T = TypeVar("T")

BATCH_SIZE: Final = 100
IDLE_POLL_S: Final = 10.0
"""An idle queue looks at its file this often, for entries queued again from outside (`outbox_replay`)."""
DEFAULT_MAX_CONFLICT_ATTEMPTS: Final = 8

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    request_id TEXT,
    device_id TEXT,
    created_at_s REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_at_s REAL
);
CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (dead_at_s, seq);
"""


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    CONFLICT = "conflict"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: DeliveryOutcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued write. ``request_id``/``device_id`` are those of the request that made it."""

    seq: int
    kind: str
    key: str
    payload: dict[str, Any]
    request_id: str | None
    device_id: str | None
    created_at_s: float
    attempts: int
    last_error: str | None = None


Deliver = Callable[[OutboxEntry], Awaitable[Delivery]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (1, 2, ...): ``initial_s * multiplier**(attempt-1)``,
    capped at ``max_s``, then spread by up to ±``jitter`` (a fraction) and capped again."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s and self.multiplier >= 1):
            raise ValueError("Backoff needs initial_s > 0, max_s >= initial_s and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff jitter must be in [0, 1), got {self.jitter}")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        exponent = min(max(attempt, 1) - 1, 64)  # past 2**64 the cap has long been reached
        base_s = min(self.max_s, self.initial_s * self.multiplier**exponent)
        spread = (2 * (rng or random).random() - 1) * self.jitter
        return min(self.max_s, base_s * (1 + spread))


class OutboxStore:
    """The SQLite file. Not thread-safe: `Outbox` calls it from one worker thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def append(self, kind: str, key: str, payload: str, request_id: str | None, device_id: str | None) -> int:
        cursor = self._db.execute(
            "INSERT INTO outbox (kind, key, payload, request_id, device_id, created_at_s) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, key, payload, request_id, device_id, time.time()),
        )
        return int(cursor.lastrowid or 0)

    def _entries(self, where: str, limit: int) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT seq, kind, key, payload, request_id, device_id, created_at_s, attempts, last_error "
            f"FROM outbox WHERE {where} ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def head(self, limit: int) -> list[OutboxEntry]:
        return self._entries("dead_at_s IS NULL", limit)

    def dead(self, limit: int) -> list[OutboxEntry]:
        return self._entries("dead_at_s IS NOT NULL", limit)

    def remove(self, seq: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def record_failure(self, seq: int, error: str) -> int:
        self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error, seq))
        row = self._db.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return int(row[0]) if row else 0

    def mark_dead(self, seq: int, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, dead_at_s = ? WHERE seq = ?",
            (error, time.time(), seq),
        )

    def requeue_dead(self) -> int:
        return self._db.execute("UPDATE outbox SET dead_at_s = NULL, attempts = 0 WHERE dead_at_s IS NOT NULL").rowcount

    def counts(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COUNT(*) - COUNT(dead_at_s), COUNT(dead_at_s) FROM outbox").fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        self._db.close()


class Outbox:
    """Put writes here; a background task delivers them (see the module docstring).

    Open with ``await Outbox.open(path, deliver)``; close with ``await outbox.aclose()``.
    """

    def __init__(
        self,
        path: Path,
        deliver: Deliver,
        *,
        backoff: Backoff = Backoff(),
        max_conflict_attempts: int = DEFAULT_MAX_CONFLICT_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        name: str = "outbox",
    ) -> None:
        self.path = Path(path)
        self.name = name
        self._deliver = deliver
        self._backoff = backoff
        self._max_conflict_attempts = max_conflict_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-store")
        self._store: OutboxStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._stalled = asyncio.Event()  # the head failed and waits out its backoff
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, deliver: Deliver, **kwargs: Any) -> Outbox:
        outbox = cls(Path(path), deliver, **kwargs)
        await outbox.start()
        return outbox

    async def start(self) -> None:
        """Open the file and start delivering (whatever an earlier run left is delivered first)."""
        if self._task is not None:
            return
        self._store = await self._call(OutboxStore, self.path)
        pending, dead = await self.counts()
        if pending or dead:
            logger.info("%s: resuming with %d pending and %d dead entries in %s", self.name, pending, dead, self.path)
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-delivery")

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _require_store(self) -> OutboxStore:
        if self._store is None or self._closed:
            raise RuntimeError(f"{self.name} is not open")
        return self._store

    async def put(self, kind: str, key: str, payload: dict[str, Any]) -> int:
        """Queue one write durably; returns its sequence number. Raises only if the local file fails."""
        store = self._require_store()
        body = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        seq = await self._call(store.append, kind, key, body, request_id_var.get(), device_id_var.get())
        self._idle.clear()
        self._wake.set()
        return seq

    async def counts(self) -> tuple[int, int]:
        """``(pending, dead)`` entries."""
        return await self._call(self._require_store().counts)

    async def dead_entries(self, limit: int = 100) -> list[OutboxEntry]:
        return await self._call(self._require_store().dead, limit)

    async def requeue_dead(self) -> int:
        """Give every dead entry another chance (after fixing what made the target refuse it)."""
        count = await self._call(self._require_store().requeue_dead)
        if count:
            self._idle.clear()
            self._wake.set()
        return count

    async def flush(self, timeout_s: float) -> bool:
        """Wait until nothing is pending; False if that did not happen within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _drain(self, timeout_s: float) -> None:
        """Wait until nothing is pending or delivery stalls (the target is away), at most ``timeout_s``."""
        waits = [asyncio.create_task(self._idle.wait()), asyncio.create_task(self._stalled.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def aclose(self, drain_timeout_s: float = 1.0) -> None:
        """Let pending entries go out for up to ``drain_timeout_s`` (not waiting on a target that is away),
        then stop; whatever is left waits on disk for the next run."""
        if self._closed:
            return
        if self._task is not None and drain_timeout_s > 0:
            await self._drain(drain_timeout_s)
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()  # an interrupted delivery stays queued; redelivery is an idempotent upsert
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed = True
        if self._store is not None:
            pending, dead = await self._call(self._store.counts)
            await self._call(self._store.close)
            if pending or dead:
                logger.info("%s: closed with %d pending and %d dead entries kept", self.name, pending, dead)
        self._executor.shutdown(wait=True)

    async def _pause(self, delay_s: float) -> None:
        if self._sleep is not None:
            await self._sleep(delay_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)

    async def _attempt(self, entry: OutboxEntry) -> Delivery:
        try:
            return await self._deliver(entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken deliverer must not kill the queue; the entry stays
            logger.exception("%s: delivering %s %s raised", self.name, entry.kind, entry.key)
            return Delivery(DeliveryOutcome.RETRY, f"{type(exc).__name__}: {exc}")

    async def _run(self) -> None:
        store = self._require_store()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                batch = await self._call(store.head, BATCH_SIZE)
                if not batch:
                    self._idle.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                    continue
                for entry in batch:
                    if not await self._handle(store, entry):
                        break
            except sqlite3.Error:  # the local file (disk full, I/O error): keep the task, try again later
                logger.exception("%s: the queue file failed", self.name)
                await self._pause(self._backoff.max_s)

    async def _handle(self, store: OutboxStore, entry: OutboxEntry) -> bool:
        """Deliver one entry; True to go on with the next, False after a failure that must be waited out."""
        result = await self._attempt(entry)
        outcome = result.outcome
        if outcome is DeliveryOutcome.DELIVERED:
            self._stalled.clear()
            await self._call(store.remove, entry.seq)
            logger.debug("%s: delivered %s %s", self.name, entry.kind, entry.key)
            return True
        give_up = outcome is DeliveryOutcome.REJECTED or (
            outcome is DeliveryOutcome.CONFLICT and entry.attempts + 1 >= self._max_conflict_attempts
        )
        if give_up:
            await self._call(store.mark_dead, entry.seq, result.detail)
            logger.error("%s: %s %s set aside as dead: %s", self.name, entry.kind, entry.key, result.detail)
            return True
        attempts = await self._call(store.record_failure, entry.seq, result.detail)
        delay_s = self._backoff.delay_s(attempts, self._rng)
        logger.warning(
            "%s: %s %s not delivered (attempt %d, %s), retrying in %.1fs",
            self.name, entry.kind, entry.key, attempts, result.detail, delay_s,
        )  # fmt: skip
        self._stalled.set()
        await self._pause(delay_s)
        return False
