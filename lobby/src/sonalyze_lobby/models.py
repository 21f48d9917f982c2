"""SQLAlchemy models: `Lobby`, `Participant` and the append-only `LobbyEvent` log.

Portable types only, so one schema serves SQLite and PostgreSQL. Relationships are ``lazy="raise"``:
code loads what it needs with ``selectinload`` and never triggers implicit I/O.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sonalyze_db import UTCDateTime, naming_metadata, utcnow
from sonalyze_lobby.roles import Role
from sonalyze_protocol.ids import DEVICE_ID_MAX_CHARS

SLOT_MAX_CHARS: Final = 64
LABEL_MAX_CHARS: Final = 128
CODE_CHARS: Final = 6
PROFILE_ID_MAX_CHARS: Final = 64

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = naming_metadata()
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class LobbyState(StrEnum):
    OPEN = "open"
    MEASUREMENT_RUNNING = "measurement_running"
    CLOSED = "closed"


class ParticipantStatus(StrEnum):
    JOINED = "joined"
    LEFT = "left"


def _str_enum(enum: type[StrEnum], name: str) -> Enum:
    """Stored as the member's value in a VARCHAR (no native PostgreSQL enum, so migrations stay simple)."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Lobby(Base):
    """A room where devices gather; ``code`` is unique among lobbies that are not closed (partial index)."""

    __tablename__ = "lobbies"
    __table_args__ = (
        Index(
            "uq_lobbies_code_not_closed",
            "code",
            unique=True,
            postgresql_where=text("state != 'closed'"),
            sqlite_where=text("state != 'closed'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(CODE_CHARS), index=True)
    creator_device_id: Mapped[str] = mapped_column(String(DEVICE_ID_MAX_CHARS))
    state: Mapped[LobbyState] = mapped_column(_str_enum(LobbyState, "lobby_state"), default=LobbyState.OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    room_snapshot: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    room_snapshot_device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_MAX_CHARS), default=None)
    room_snapshot_at: Mapped[datetime | None] = mapped_column(default=None)
    # what the admin's app shows (lobby.step_update / lobby.profile_update), for late joiners
    step_index: Mapped[int | None] = mapped_column(Integer, default=None)
    profile_id: Mapped[str | None] = mapped_column(String(PROFILE_ID_MAX_CHARS), default=None)

    participants: Mapped[list[Participant]] = relationship(
        back_populates="lobby", lazy="raise", order_by="Participant.joined_at", cascade="all, delete-orphan"
    )
    events: Mapped[list[LobbyEvent]] = relationship(
        back_populates="lobby", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    def participant(self, device_id: str) -> Participant | None:
        """The participant row of ``device_id`` (joined or left), if any; needs participants loaded."""
        return next((p for p in self.participants if p.device_id == device_id), None)

    @property
    def joined(self) -> list[Participant]:
        return [p for p in self.participants if p.status is ParticipantStatus.JOINED]


class Participant(Base):
    """One device in one lobby; a device that leaves and comes back keeps its row."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("lobby_id", "device_id"),
        # NULL slots do not collide, on SQLite and PostgreSQL alike
        UniqueConstraint("lobby_id", "role_slot_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    lobby_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lobbies.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_MAX_CHARS), index=True)
    role: Mapped[Role] = mapped_column(_str_enum(Role, "participant_role"), default=Role.NONE)
    role_slot_id: Mapped[str | None] = mapped_column(String(SLOT_MAX_CHARS), default=None)
    role_slot_label: Mapped[str | None] = mapped_column(String(LABEL_MAX_CHARS), default=None)
    status: Mapped[ParticipantStatus] = mapped_column(
        _str_enum(ParticipantStatus, "participant_status"), default=ParticipantStatus.JOINED
    )
    connected: Mapped[bool] = mapped_column(Boolean, default=True)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(default=None)

    lobby: Mapped[Lobby] = relationship(back_populates="participants", lazy="raise")


class LobbyEvent(Base):
    """Append-only log of changes; ids ascend, so clients poll with ``after=<last id seen>``."""

    __tablename__ = "lobby_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    lobby_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lobbies.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_MAX_CHARS), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lobby: Mapped[Lobby] = relationship(back_populates="events", lazy="raise")


class DevicePresence(Base):
    """Whether the gateway last reported a device connected; the truth `Participant.connected` follows.

    Kept per device (not per lobby) so a join racing with a disconnect still ends up right: both lock
    this row, and whichever comes second sees the other's result.
    """

    __tablename__ = "device_presence"

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_MAX_CHARS), primary_key=True)
    connected: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class MeasurementSession(Base):
    """A measurement session's coordinator state, written at every transition (`session_store`).

    ``state`` is the versioned JSON of the `SessionState` with its timers' absolute deadlines (UTC);
    ``running`` is false once the session is final. ``owner`` is the lobby replica driving it until
    ``lease_expires_at`` (renewed while it lives); ``owner_url`` is where the others forward its events.
    """

    __tablename__ = "measurement_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lobby_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lobbies.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(32))
    running: Mapped[bool] = mapped_column(Boolean, index=True)
    state_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column()
    owner: Mapped[str | None] = mapped_column(String(128), default=None)
    owner_url: Mapped[str | None] = mapped_column(String(256), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StorageOutboxRow(Base):
    """One write for the storage service, added in the transaction of the change it records (`history`).

    The relay moves committed rows, in ``id`` order, into the service's delivery outbox
    (`sonalyze_protocol.outbox`) and deletes them in the same transaction: a row exists iff its change committed.
    """

    __tablename__ = "storage_outbox"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column()
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    device_id: Mapped[str | None] = mapped_column(String(DEVICE_ID_MAX_CHARS), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
