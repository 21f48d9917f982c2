"""The lobby's use cases: one function per gateway event / HTTP endpoint, the same rules for both.

Each use case loads what it needs (``selectinload``), checks the rules, mutates, writes a `LobbyEvent`
and its storage record (`record_lobby`, the transactional outbox) and commits; only then does it push
``lobby.updated`` (best effort: a failed push never undoes a change).
Mutations lock the lobby row (``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised, see db.py),
so concurrent joins and leaves of one lobby never lose an update. Reads load a lobby in one statement.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Final, TypeVar

import orjson
from sqlalchemy import Select, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from sonalyze_lobby import lobby_reads
from sonalyze_lobby.broadcast import LOBBY_PROFILE_UPDATE, LOBBY_ROOM_SNAPSHOT, LOBBY_STEP_UPDATE
from sonalyze_lobby.codes import generate_code, is_well_formed, normalize_code
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.history import record_lobby
from sonalyze_lobby.models import (
    DevicePresence,
    Lobby,
    LobbyEvent,
    LobbyState,
    Participant,
    ParticipantStatus,
    Role,
    utcnow,
)
from sonalyze_lobby.schemas import (
    EventPage,
    EventView,
    LobbyGet,
    LobbySummary,
    LobbyView,
    ProfileUpdate,
    RoleAssign,
    RoomSnapshotShare,
    StepUpdate,
)
from sonalyze_protocol.errors import BadRequest, Conflict, Forbidden, InvalidState, NotFound

logger = logging.getLogger("sonalyze.lobby.service")

AnyLobby = TypeVar("AnyLobby", Lobby, LobbyView)

CODE_ATTEMPTS: Final = 20
JOIN_ATTEMPTS: Final = 3


class Change:
    """The ``type`` values of ``lobby.updated`` (and of the matching `LobbyEvent` rows)."""

    PARTICIPANT_JOINED: Final = "participant_joined"
    PARTICIPANT_LEFT: Final = "participant_left"
    ROLE_ASSIGNED: Final = "role_assigned"
    STATE_CHANGED: Final = "state_changed"
    CONNECTION_CHANGED: Final = "connection_changed"
    LOBBY_CLOSED: Final = "lobby_closed"
    ROOM_SNAPSHOT: Final = "room_snapshot"
    LOBBY_CREATED: Final = "lobby_created"  # logged only: nobody else is there to tell
    STEP_UPDATE: Final = "step_update"  # logged only: pushed as lobby.step_update, not lobby.updated
    PROFILE_UPDATE: Final = "profile_update"  # likewise lobby.profile_update


# --- loaders and checks (shared with the measurement protocol) ----------------------------------


def _with_participants(query: Select[Lobby], for_update: bool) -> Select[Lobby]:
    """Participants loaded with the lobby: in the same statement for a read; for a locking read in a
    second one (PostgreSQL cannot lock the outer join's side), the row locked until commit."""
    if not for_update:
        return query.options(joinedload(Lobby.participants))
    return query.options(selectinload(Lobby.participants)).with_for_update().execution_options(populate_existing=True)


# built once, values bound per call: building a joined ORM select and its cache key per event cost
# ~0.3 ms of CPU, about a fifth of a whole `lobby.get`
_LOBBY_BY_ID: Final = {
    lock: _with_participants(select(Lobby).where(Lobby.id == bindparam("lobby_id")), lock) for lock in (False, True)
}
# the open lobby with the code if there is one (at most one), else a closed one: one statement
_LOBBY_BY_CODE: Final = {
    lock: _with_participants(
        select(Lobby).where(Lobby.code == bindparam("code")).order_by(Lobby.state == LobbyState.CLOSED).limit(1), lock
    )
    for lock in (False, True)
}


async def get_lobby(session: AsyncSession, lobby_id: uuid.UUID, *, for_update: bool = False) -> Lobby:
    """The lobby with its participants loaded; `NotFound` when there is none.

    ``for_update`` locks the row until commit (PostgreSQL), for use cases that change the lobby.
    """
    result = await session.execute(_LOBBY_BY_ID[for_update], {"lobby_id": lobby_id})
    lobby = result.unique().scalar_one_or_none()
    if lobby is None:
        raise NotFound(f"lobby {lobby_id} does not exist")
    return lobby


async def find_lobby_by_code(session: AsyncSession, raw_code: str, *, for_update: bool = False) -> Lobby:
    """The lobby that is not closed with this code (any case, spaces around ignored).

    `NotFound` for a code no lobby has, `Conflict` when the only lobby with it is closed.
    """
    code = normalize_code(raw_code)
    lobby = None
    if is_well_formed(code):
        lobby = (await session.execute(_LOBBY_BY_CODE[for_update], {"code": code})).unique().scalar_one_or_none()
    return _open_by_code(lobby, code)


def _open_by_code(lobby: AnyLobby | None, code: str) -> AnyLobby:
    """The rule of a lookup by code (the lobby or record found for ``code``, if any): see `find_lobby_by_code`."""
    if lobby is None:
        raise NotFound(f"no lobby has the code '{code}'")
    if lobby.state is LobbyState.CLOSED:
        raise Conflict(f"lobby {code} is closed")
    return lobby


def is_admin(lobby: Lobby, device_id: str) -> bool:
    return lobby.creator_device_id == device_id


def require_admin(lobby: Lobby, device_id: str, action: str = "do this") -> None:
    """`Forbidden` unless ``device_id`` created the lobby."""
    if not is_admin(lobby, device_id):
        raise Forbidden(f"only the lobby's admin may {action}")


def require_joined(lobby: Lobby, device_id: str) -> Participant:
    """The caller's participant row; `Forbidden` unless it is currently joined."""
    participant = lobby.participant(device_id)
    if participant is None or participant.status is not ParticipantStatus.JOINED:
        raise Forbidden(f"device {device_id} is not a participant of lobby {lobby.code}")
    return participant


def require_not_closed(lobby: Lobby) -> None:
    if lobby.state is LobbyState.CLOSED:
        raise InvalidState(f"lobby {lobby.code} is closed")


def record(session: AsyncSession, lobby: Lobby, change: str, device_id: str | None, **payload: Any) -> LobbyEvent:
    """Add a `LobbyEvent` to the session (committed with the change it describes)."""
    event = LobbyEvent(lobby_id=lobby.id, type=change, device_id=device_id, payload=payload)
    session.add(event)
    return event


async def is_connected(session: AsyncSession, device_id: str, *, lock: bool = False) -> bool:
    """What the gateway last said about the device; a device it never reported counts as connected
    (it is acting right now, perhaps over HTTP)."""
    query = select(DevicePresence.connected).where(DevicePresence.device_id == device_id)
    if lock:
        query = query.with_for_update()
    connected = await session.scalar(query)
    return True if connected is None else connected


# --- use cases ----------------------------------------------------------------------------------


async def create_lobby(ctx: LobbyContext, *, new_code: Callable[[], str] = generate_code) -> LobbyView:
    """A new open lobby whose admin and first participant is the caller; a code collision is retried."""
    session = ctx.session
    for attempt in range(1, CODE_ATTEMPTS + 1):
        lobby = Lobby(id=uuid.uuid4(), code=new_code(), creator_device_id=ctx.device_id, state=LobbyState.OPEN)
        connected = await is_connected(session, ctx.device_id)
        lobby.participants = [Participant(device_id=ctx.device_id, role=Role.NONE, connected=connected)]
        session.add(lobby)
        record(session, lobby, Change.LOBBY_CREATED, ctx.device_id, code=lobby.code)
        try:
            await record_lobby(session, ctx.history, lobby)
            await session.commit()
        except IntegrityError:
            await session.rollback()
            logger.info("lobby code collision on attempt %d, retrying", attempt)
            continue
        logger.info("lobby %s created with code %s", lobby.id, lobby.code)
        return LobbyView.of(lobby)
    raise Conflict(f"could not find a free lobby code in {CODE_ATTEMPTS} attempts")


async def join_lobby(ctx: LobbyContext, code: str) -> LobbyView:
    """Join by code; joining twice is a no-op, rejoining after leaving restores the same participant."""
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        lobby = await find_lobby_by_code(ctx.session, code, for_update=True)
        participant = lobby.participant(ctx.device_id)
        if participant is not None and participant.status is ParticipantStatus.JOINED:
            await ctx.session.commit()  # ends the transaction (and releases the lock)
            return LobbyView.of(lobby)
        if participant is None:
            participant = Participant(device_id=ctx.device_id, role=Role.NONE)
            lobby.participants.append(participant)
        participant.status = ParticipantStatus.JOINED
        participant.left_at = None
        # locked: a disconnect being recorded right now either finished (we see it) or waits for us (it sees us)
        participant.connected = await is_connected(ctx.session, ctx.device_id, lock=True)
        record(ctx.session, lobby, Change.PARTICIPANT_JOINED, ctx.device_id)
        try:
            await record_lobby(ctx.session, ctx.history, lobby)
            await ctx.session.commit()
        except IntegrityError:  # the same device joining twice at once: the other request won
            await ctx.session.rollback()
            logger.info("concurrent join of %s, retrying (%d)", ctx.device_id, attempt)
            continue
        await ctx.broadcaster.lobby_updated(lobby, Change.PARTICIPANT_JOINED, ctx.device_id)
        return LobbyView.of(lobby)
    raise Conflict("the lobby changed while joining; try again")


async def leave_lobby(ctx: LobbyContext, lobby_id: uuid.UUID) -> LobbyView:
    """Leave; the admin leaving, or the last participant, closes the lobby for everyone."""
    lobby = await get_lobby(ctx.session, lobby_id, for_update=True)
    participant = lobby.participant(ctx.device_id)
    if participant is None:
        raise Forbidden(f"device {ctx.device_id} is not a participant of lobby {lobby.code}")
    if participant.status is ParticipantStatus.LEFT:  # already gone (or the lobby closed): nothing to do
        await ctx.session.commit()
        return LobbyView.of(lobby)
    told = [p.device_id for p in lobby.joined]
    now = utcnow()
    participant.status = ParticipantStatus.LEFT
    participant.left_at = now
    record(ctx.session, lobby, Change.PARTICIPANT_LEFT, ctx.device_id)
    closing = is_admin(lobby, ctx.device_id) or not lobby.joined
    if closing:
        _close(ctx.session, lobby, ctx.device_id, reason="admin_left" if is_admin(lobby, ctx.device_id) else "empty")
    await record_lobby(ctx.session, ctx.history, lobby)
    await ctx.session.commit()
    change = Change.LOBBY_CLOSED if closing else Change.PARTICIPANT_LEFT
    await ctx.broadcaster.lobby_updated(lobby, change, ctx.device_id, recipients=told)
    if closing:
        await _tell_coordinator_closed(ctx, lobby.id)
    return LobbyView.of(lobby)


async def _tell_coordinator_closed(ctx: LobbyContext, lobby_id: uuid.UUID) -> None:
    """A running measurement session of a closed lobby ends now, not when its timers run out."""
    if ctx.coordinator is None:
        return
    try:
        await ctx.coordinator.lobby_closed(str(lobby_id))
    except Exception:  # the lobby is closed either way; the session's own timeouts remain as a backstop
        logger.exception("coordinator failed to end the sessions of lobby %s", lobby_id)


def _close(session: AsyncSession, lobby: Lobby, device_id: str, reason: str) -> None:
    now = utcnow()
    lobby.state = LobbyState.CLOSED
    lobby.closed_at = now
    for other in lobby.joined:
        other.status = ParticipantStatus.LEFT
        other.left_at = now
    record(session, lobby, Change.LOBBY_CLOSED, device_id, reason=reason)


async def get_lobby_view(ctx: LobbyContext, query: LobbyGet) -> LobbyView | LobbySummary:
    """Any device may look a lobby up, by id or by code (a closed lobby is found by id only).

    Its admin and participants (present or past) get the whole view; anyone else only a summary
    without device ids, since knowing a code must not reveal whom to impersonate. Read without the ORM
    (`lobby_reads`): the lobby's hottest event.
    """
    if query.lobby_id is not None:
        lobby = await lobby_reads.lobby_by_id(ctx.rows, query.lobby_id)
        if lobby is None:
            raise NotFound(f"lobby {query.lobby_id} does not exist")
    else:
        assert query.code is not None
        code = normalize_code(query.code)
        lobby = _open_by_code(await lobby_reads.lobby_by_code(ctx.rows, code) if is_well_formed(code) else None, code)
    if lobby.creator_device_id == ctx.device_id or any(p.device_id == ctx.device_id for p in lobby.participants):
        return lobby
    return LobbySummary.of(lobby)


async def start_lobby(ctx: LobbyContext, lobby_id: uuid.UUID) -> LobbyView:
    """Admin only: ``open`` -> ``measurement_running``."""
    lobby = await get_lobby(ctx.session, lobby_id, for_update=True)
    require_admin(lobby, ctx.device_id, "start the lobby")
    require_not_closed(lobby)
    if lobby.state is not LobbyState.OPEN:
        raise InvalidState(f"lobby {lobby.code} is {lobby.state.value}, not open")
    return await set_state(ctx, lobby, LobbyState.MEASUREMENT_RUNNING)


async def set_state(ctx: LobbyContext, lobby: Lobby, state: LobbyState) -> LobbyView:
    """Move a loaded lobby to ``state``, log it, commit and push ``state_changed`` (for the protocol too)."""
    previous = lobby.state
    lobby.state = state
    record(ctx.session, lobby, Change.STATE_CHANGED, ctx.device_id, previous=previous.value, state=state.value)
    await record_lobby(ctx.session, ctx.history, lobby)
    await ctx.session.commit()
    await ctx.broadcaster.lobby_updated(lobby, Change.STATE_CHANGED, ctx.device_id)
    return LobbyView.of(lobby)


async def assign_role(ctx: LobbyContext, body: RoleAssign) -> LobbyView:
    """Admin only; the target must be joined and a slot id belongs to one joined participant at a time.

    A slot still held by a participant who has left is taken from them.
    """
    lobby = await get_lobby(ctx.session, body.lobby_id, for_update=True)
    require_admin(lobby, ctx.device_id, "assign roles")
    require_not_closed(lobby)
    if lobby.state is not LobbyState.OPEN:
        raise InvalidState(f"roles are fixed while lobby {lobby.code} is {lobby.state.value}")
    target = lobby.participant(body.target_device_id)
    if target is None or target.status is not ParticipantStatus.JOINED:
        raise NotFound(f"device {body.target_device_id} is not a joined participant of lobby {lobby.code}")
    slot_id = body.role_slot_id if body.role is not Role.NONE else None
    label = (body.role_slot_label or None) if body.role is not Role.NONE else None
    if slot_id is not None:
        holder = next((p for p in lobby.participants if p.role_slot_id == slot_id and p is not target), None)
        if holder is not None and holder.status is ParticipantStatus.JOINED:
            raise Conflict(f"slot '{slot_id}' is already held by device {holder.device_id}")
        if holder is not None:
            holder.role, holder.role_slot_id, holder.role_slot_label = Role.NONE, None, None
            await ctx.session.flush()  # free the slot before the target takes it (unique per lobby)
    target.role, target.role_slot_id, target.role_slot_label = body.role, slot_id, label
    record(
        ctx.session,
        lobby,
        Change.ROLE_ASSIGNED,
        ctx.device_id,
        target_device_id=target.device_id,
        role=body.role.value,
        role_slot_id=slot_id,
        role_slot_label=label,
    )
    try:
        await record_lobby(ctx.session, ctx.history, lobby)
        await ctx.session.commit()
    except IntegrityError:
        await ctx.session.rollback()
        raise Conflict(f"slot '{slot_id}' was taken at the same time; try again") from None
    await ctx.broadcaster.lobby_updated(lobby, Change.ROLE_ASSIGNED, target.device_id)
    return LobbyView.of(lobby)


async def share_room_snapshot(ctx: LobbyContext, body: RoomSnapshotShare) -> LobbyView:
    """Any joined participant stores the room; the others get ``lobby.room_snapshot`` and everyone ``lobby.updated``."""
    room = body.room if isinstance(body.room, dict) else body.room.model_dump(mode="json", exclude_none=True)
    size_bytes = len(orjson.dumps(room))
    if size_bytes > ctx.settings.room_snapshot_max_bytes:
        raise BadRequest(
            f"data.room: snapshot is {size_bytes} bytes, the limit is {ctx.settings.room_snapshot_max_bytes}"
        )
    lobby = await get_lobby(ctx.session, body.lobby_id, for_update=True)
    require_not_closed(lobby)
    require_joined(lobby, ctx.device_id)
    lobby.room_snapshot = room
    lobby.room_snapshot_device_id = ctx.device_id
    lobby.room_snapshot_at = utcnow()
    record(ctx.session, lobby, Change.ROOM_SNAPSHOT, ctx.device_id, size_bytes=size_bytes)
    await ctx.session.commit()
    others = [p.device_id for p in lobby.joined if p.device_id != ctx.device_id]
    snapshot = {"lobby_id": str(lobby.id), "device_id": ctx.device_id, "room": room}
    await ctx.broadcaster.push(others, LOBBY_ROOM_SNAPSHOT, snapshot)
    await ctx.broadcaster.lobby_updated(lobby, Change.ROOM_SNAPSHOT, ctx.device_id)
    return LobbyView.of(lobby)


async def update_step(ctx: LobbyContext, body: StepUpdate) -> LobbyView:
    """Admin only: the step the host's measurement page shows, kept and pushed to the others."""
    return await _host_view_update(
        ctx, body.lobby_id, "step_index", body.step_index, Change.STEP_UPDATE, LOBBY_STEP_UPDATE
    )


async def update_profile(ctx: LobbyContext, body: ProfileUpdate) -> LobbyView:
    """Admin only: the host's chosen sweep profile, kept and pushed to the others."""
    return await _host_view_update(
        ctx, body.lobby_id, "profile_id", body.profile_id, Change.PROFILE_UPDATE, LOBBY_PROFILE_UPDATE
    )


async def _host_view_update(
    ctx: LobbyContext, lobby_id: uuid.UUID, field: str, value: Any, change: str, event: str
) -> LobbyView:
    """Store one field of what the host shows; the other joined participants get ``event``.

    Lobby views carry it too, so a phone that joins later starts on the host's step and profile.
    """
    lobby = await get_lobby(ctx.session, lobby_id, for_update=True)
    require_admin(lobby, ctx.device_id, f"send {event}")
    require_not_closed(lobby)
    setattr(lobby, field, value)
    record(ctx.session, lobby, change, ctx.device_id, **{field: value})
    await ctx.session.commit()
    others = [p.device_id for p in lobby.joined if p.device_id != ctx.device_id]
    await ctx.broadcaster.push(others, event, {"lobby_id": str(lobby.id), "device_id": ctx.device_id, field: value})
    return LobbyView.of(lobby)


async def list_events(ctx: LobbyContext, lobby_id: uuid.UUID, after: int, limit: int) -> EventPage:
    """Events with ids above ``after``, ascending; for any device that is or was a participant."""
    lobby = await get_lobby(ctx.session, lobby_id)
    if lobby.participant(ctx.device_id) is None:
        raise Forbidden(f"device {ctx.device_id} is not a participant of lobby {lobby.code}")
    limit = min(limit, ctx.settings.events_page_max)
    query = (
        select(LobbyEvent)
        .where(LobbyEvent.lobby_id == lobby_id, LobbyEvent.id > after)
        .order_by(LobbyEvent.id)
        .limit(limit)
    )
    events = [EventView.of(e) for e in (await ctx.session.scalars(query)).all()]
    await ctx.session.commit()
    return EventPage(lobby_id=lobby_id, events=events, last_event_id=events[-1].id if events else after)
