"""Tables of the long-term record. Every row has a string ``id`` and ``created_at``/``updated_at``.

Relations: participants -> lobbies (by ``lobby_id``, the lobby service's id), analysis outputs ->
measurements (by ``measurement_id`` and by ``(job_id, upload_name)``), simulation results ->
simulation jobs. Children follow their parent on delete (cascade) and on a key change.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sonalyze_db import UTCDateTime, naming_metadata, utcnow

ID_LENGTH: Final = 128
KEY_LENGTH: Final = 200
SHORT_LENGTH: Final = 100

JsonType = JSON().with_variant(JSONB(), "postgresql")


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = naming_metadata()


class RecordMixin:
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Device(RecordMixin, Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class Lobby(RecordMixin, Base):
    __tablename__ = "lobbies"

    lobby_id: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    code: Mapped[str | None] = mapped_column(String(SHORT_LENGTH), index=True)
    admin_device_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    status: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class Participant(RecordMixin, Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("lobby_id", "device_id"),)

    lobby_id: Mapped[str] = mapped_column(
        String(KEY_LENGTH), ForeignKey("lobbies.lobby_id", ondelete="CASCADE", onupdate="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True)
    role: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    role_slot_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class Measurement(RecordMixin, Base):
    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("job_id", "upload_name"),)

    job_id: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True)
    upload_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    lobby_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)
    device_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)
    speaker_slot_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    mic_slot_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    signal_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    sample_rate_hz: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class AnalysisOutput(RecordMixin, Base):
    __tablename__ = "analysis_outputs"
    __table_args__ = (
        UniqueConstraint("measurement_id", "analysis_run"),
        ForeignKeyConstraint(
            ["job_id", "upload_name"],
            ["measurements.job_id", "measurements.upload_name"],
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
    )

    measurement_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("measurements.id", ondelete="CASCADE", onupdate="CASCADE"), index=True
    )
    job_id: Mapped[str] = mapped_column(String(KEY_LENGTH), index=True)
    upload_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    analysis_run: Mapped[str] = mapped_column(String(KEY_LENGTH))
    status: Mapped[str] = mapped_column(String(SHORT_LENGTH))
    error: Mapped[str | None] = mapped_column(Text)
    speaker_slot_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    mic_slot_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class SimulationJob(RecordMixin, Base):
    __tablename__ = "simulation_jobs"

    status: Mapped[str] = mapped_column(String(SHORT_LENGTH))
    method: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    device_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)
    lobby_id: Mapped[str | None] = mapped_column(String(KEY_LENGTH), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    request: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class SimulationResult(RecordMixin, Base):
    __tablename__ = "simulation_results"

    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("simulation_jobs.id", ondelete="CASCADE", onupdate="CASCADE"), index=True
    )
    source_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    microphone_id: Mapped[str | None] = mapped_column(String(SHORT_LENGTH))
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
