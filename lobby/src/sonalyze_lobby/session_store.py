"""Measurement sessions in the lobby's database, so they survive a restart and move between replicas.

One row per session (`models.MeasurementSession`): the coordinator's `SessionState` as versioned JSON
(``STATE_VERSION``) with each armed timer's absolute deadline (UTC wall clock), written at every
transition before its effects run. Where the transition changes the lobby (``ReleaseLobby``), the lobby
row changes in the same transaction; a new session's row is written in the transaction that moves its
lobby to ``measurement_running``.

Ownership: the replica in ``owner`` drives the session until ``lease_expires_at``; it renews the lease
while it lives (`Replica.renew`), and every write is fenced on ``owner`` (a replica that lost the lease
cannot overwrite its successor's state: `LeaseLost`). A restarted replica (same ``REPLICA_ID``) takes its
own sessions back at once; the others take sessions whose lease expired (`claim_resumable`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sonalyze_lobby import service
from sonalyze_lobby.context import LobbyApp
from sonalyze_lobby.history import record_lobby
from sonalyze_lobby.measurement_protocol import SessionState, Step
from sonalyze_lobby.measurement_protocol.state import HOLDING_STEPS
from sonalyze_lobby.models import LobbyState, MeasurementSession
from sonalyze_lobby.session_runner import LeaseLost

logger = logging.getLogger("sonalyze.lobby.sessions")

STATE_VERSION: Final = 1
_STATE: Final = TypeAdapter(SessionState)
Deadlines = Mapping[str, datetime]
Announce = Callable[[], Awaitable[None]]


class UndecodableState(ValueError):
    """A stored state this version cannot read (another ``STATE_VERSION``, or broken)."""


@dataclass(frozen=True, slots=True)
class Stored:
    state: SessionState
    deadlines: dict[str, datetime]


@dataclass(frozen=True, slots=True)
class Located:
    """A session's row as far as routing needs it."""

    session_id: str
    running: bool
    owner: str | None
    owner_url: str | None
    lease_expired: bool
    state_version: int
    document: dict[str, Any]

    def device_ids(self) -> set[str]:
        session = self.document.get("session", {}) if isinstance(self.document, dict) else {}
        slots = [*session.get("speakers", []), *session.get("microphones", [])]
        return {str(slot.get("device_id")) for slot in slots if isinstance(slot, dict)}


async def running_session_of(session: AsyncSession, lobby_id: uuid.UUID) -> str | None:
    """The session holding a lobby on any replica, if there is one (call with the lobby's row locked)."""
    query = select(MeasurementSession.session_id).where(
        MeasurementSession.lobby_id == lobby_id, MeasurementSession.step.in_([step.value for step in HOLDING_STEPS])
    )
    return (await session.scalars(query.limit(1))).first()


@dataclass(frozen=True, slots=True)
class Replica:
    """Who this lobby process is among the replicas, and how long its leases last."""

    replica_id: str
    url: str
    lease_s: float

    def lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_s)


def utcnow() -> datetime:
    return datetime.now(UTC)


def encode(state: SessionState, deadlines: Deadlines) -> dict[str, Any]:
    return {
        "session": _STATE.dump_python(state, mode="json"),
        "deadlines": {key: deadlines[key].astimezone(UTC).isoformat() for key in state.timers if key in deadlines},
    }


def decode(version: int, document: Mapping[str, Any]) -> Stored:
    """The state and deadlines of a row; `UndecodableState` for another version or a broken document."""
    if version != STATE_VERSION:
        raise UndecodableState(f"state version {version}, this lobby reads {STATE_VERSION}")
    try:
        state = _STATE.validate_python(document["session"])
        deadlines = {key: datetime.fromisoformat(value) for key, value in dict(document["deadlines"]).items()}
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise UndecodableState(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return Stored(state, deadlines)


def _fields(state: SessionState, deadlines: Deadlines) -> dict[str, Any]:
    return {
        "step": state.step.value,
        "running": not state.is_final,
        "state_version": STATE_VERSION,
        "state": encode(state, deadlines),
        "updated_at": utcnow(),
    }


class DatabaseStore:
    """The coordinator's `SessionStore` over the lobby's database."""

    def __init__(self, app: LobbyApp, replica: Replica) -> None:
        self._app = app
        self.replica = replica

    @property
    def app(self) -> LobbyApp:
        return self._app

    def add(self, session: AsyncSession, state: SessionState, deadlines: Deadlines) -> None:
        """Add a new session's row to ``session`` (committed by the caller, with its lobby's change)."""
        now = utcnow()
        row = MeasurementSession(
            session_id=state.session_id,
            lobby_id=uuid.UUID(state.lobby_id),
            owner=self.replica.replica_id,
            owner_url=self.replica.url or None,
            lease_expires_at=self.replica.lease_until(now),
            created_at=now,
            **_fields(state, deadlines),
        )
        session.add(row)

    async def save(self, state: SessionState, deadlines: Deadlines, *, release_lobby: bool) -> Announce | None:
        """Write the state (fenced on this replica's ownership) and, with ``release_lobby``, reopen its lobby
        in the same transaction; returns the push that announces the lobby's change, to run after."""
        async with self._app.database.sessionmaker() as session:
            written = await session.execute(
                update(MeasurementSession)
                .where(
                    MeasurementSession.session_id == state.session_id,
                    MeasurementSession.owner == self.replica.replica_id,
                )
                .values(**_fields(state, deadlines), lease_expires_at=self.replica.lease_until(utcnow()))
            )
            if written.rowcount != 1:  # type: ignore[attr-defined]
                await session.rollback()
                raise LeaseLost(f"measurement session {state.session_id} is driven by another lobby replica")
            lobby = None
            if release_lobby:
                lobby = await service.get_lobby(session, uuid.UUID(state.lobby_id), for_update=True)
                if lobby.state is LobbyState.MEASUREMENT_RUNNING:
                    lobby.state = LobbyState.OPEN
                    service.record(
                        session,
                        lobby,
                        service.Change.STATE_CHANGED,
                        state.admin_device_id,
                        previous=LobbyState.MEASUREMENT_RUNNING.value,
                        state=LobbyState.OPEN.value,
                    )
                    await record_lobby(session, self._app.history, lobby)
                else:
                    lobby = None  # closed meanwhile, or already open
            await session.commit()
        if lobby is None:
            return None
        released = lobby

        async def announce() -> None:
            await self._app.broadcaster.lobby_updated(released, service.Change.STATE_CHANGED, state.admin_device_id)

        return announce

    async def renew(self) -> int:
        """Extend this replica's leases on its running sessions; returns how many."""
        async with self._app.database.sessionmaker() as session:
            renewed = await session.execute(
                update(MeasurementSession)
                .where(MeasurementSession.owner == self.replica.replica_id, MeasurementSession.running.is_(True))
                .values(lease_expires_at=self.replica.lease_until(utcnow()))
            )
            await session.commit()
        return int(renewed.rowcount)  # type: ignore[attr-defined]

    async def claim_resumable(self, *, exclude: set[str] = frozenset()) -> list[MeasurementSession]:  # type: ignore[assignment]
        """Take over running sessions that are this replica's (restarted) or whose lease expired; returns
        their rows, now owned by this replica."""
        me = self.replica.replica_id
        now = utcnow()
        resumable = or_(
            MeasurementSession.owner == me,
            MeasurementSession.owner.is_(None),
            MeasurementSession.lease_expires_at.is_(None),
            MeasurementSession.lease_expires_at < now,
        )
        claimed: list[MeasurementSession] = []
        async with self._app.database.sessionmaker() as session:
            query = select(MeasurementSession.session_id).where(MeasurementSession.running.is_(True), resumable)
            candidates = [s for s in (await session.scalars(query)).all() if s not in exclude]
            await session.commit()
        for session_id in candidates:
            async with self._app.database.sessionmaker() as session:
                taken = await session.execute(
                    update(MeasurementSession)
                    .where(MeasurementSession.session_id == session_id, MeasurementSession.running.is_(True), resumable)
                    .values(
                        owner=me, owner_url=self.replica.url or None, lease_expires_at=self.replica.lease_until(now)
                    )
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    await session.rollback()
                    continue  # another replica was quicker
                row = await session.get(MeasurementSession, session_id)
                await session.commit()
            if row is not None:
                claimed.append(row)
        return claimed

    async def forget_finished(self, retention_s: float) -> int:
        """Delete the rows of sessions that finished more than ``retention_s`` ago; returns how many."""
        cutoff = utcnow() - timedelta(seconds=retention_s)
        async with self._app.database.sessionmaker() as session:
            deleted = await session.execute(
                delete(MeasurementSession).where(
                    MeasurementSession.running.is_(False), MeasurementSession.updated_at < cutoff
                )
            )
            await session.commit()
        return int(deleted.rowcount)  # type: ignore[attr-defined]

    async def end_undecodable(self, session_id: str) -> None:
        """Mark a session whose state cannot be read as cancelled (its lobby is reopened by the caller)."""
        async with self._app.database.sessionmaker() as session:
            await session.execute(
                update(MeasurementSession)
                .where(MeasurementSession.session_id == session_id)
                .values(running=False, step=Step.CANCELLED.value, updated_at=utcnow())
            )
            await session.commit()

    async def locate(self, session_id: str) -> Located | None:
        """Where a session is driven, as its row says (None: no such session)."""
        async with self._app.database.sessionmaker() as session:
            row = await session.get(MeasurementSession, session_id)
            await session.commit()
        if row is None:
            return None
        expired = row.lease_expires_at is None or row.lease_expires_at < utcnow()
        return Located(row.session_id, row.running, row.owner, row.owner_url, expired, row.state_version, row.state)

    async def running_elsewhere(self, driven: set[str]) -> list[Located]:
        """The running sessions other replicas drive (for relaying a device's connection changes)."""
        async with self._app.database.sessionmaker() as session:
            query = select(MeasurementSession).where(
                MeasurementSession.running.is_(True), MeasurementSession.owner != self.replica.replica_id
            )
            rows = [r for r in (await session.scalars(query)).all() if r.session_id not in driven]
            await session.commit()
        now = utcnow()
        return [
            Located(
                r.session_id,
                r.running,
                r.owner,
                r.owner_url,
                r.lease_expires_at is None or r.lease_expires_at < now,
                r.state_version,
                r.state,
            )
            for r in rows
        ]

    async def lobbies_with_running_sessions(self) -> set[uuid.UUID]:
        async with self._app.database.sessionmaker() as session:
            query = select(MeasurementSession.lobby_id).where(MeasurementSession.running.is_(True))
            lobby_ids = set((await session.scalars(query)).all())
            await session.commit()
        return lobby_ids


__all__ = [
    "STATE_VERSION",
    "DatabaseStore",
    "LeaseLost",
    "Located",
    "Replica",
    "Stored",
    "UndecodableState",
    "decode",
    "encode",
    "running_session_of",
]
