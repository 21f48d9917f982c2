"""create lobbies, participants, lobby_events and device_presence

Revision ID: 2026_11_23_create_lobbies
Revises:
Create Date: 2026-11-23 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_23_create_lobbies"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_CLOSED = "state != 'closed'"


def upgrade() -> None:
    op.create_table(
        "lobbies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("creator_device_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("room_snapshot", sa.JSON(), nullable=True),
        sa.Column("room_snapshot_device_id", sa.String(length=128), nullable=True),
        sa.Column("room_snapshot_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lobbies")),
    )
    op.create_index(op.f("ix_lobbies_code"), "lobbies", ["code"], unique=False)
    # a code is unique among lobbies that are not closed; closed lobbies free their code
    op.create_index(
        "uq_lobbies_code_not_closed",
        "lobbies",
        ["code"],
        unique=True,
        postgresql_where=sa.text(NOT_CLOSED),
        sqlite_where=sa.text(NOT_CLOSED),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lobby_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("role_slot_id", sa.String(length=64), nullable=True),
        sa.Column("role_slot_label", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["lobby_id"], ["lobbies.id"], name=op.f("fk_participants_lobby_id_lobbies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("lobby_id", "device_id", name=op.f("uq_participants_lobby_id_device_id")),
        sa.UniqueConstraint("lobby_id", "role_slot_id", name=op.f("uq_participants_lobby_id_role_slot_id")),
    )
    op.create_index(op.f("ix_participants_device_id"), "participants", ["device_id"], unique=False)
    op.create_index(op.f("ix_participants_lobby_id"), "participants", ["lobby_id"], unique=False)
    op.create_table(
        "lobby_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("lobby_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lobby_id"], ["lobbies.id"], name=op.f("fk_lobby_events_lobby_id_lobbies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lobby_events")),
    )
    op.create_index(op.f("ix_lobby_events_lobby_id"), "lobby_events", ["lobby_id"], unique=False)
    op.create_table(
        "device_presence",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_presence")),
    )


def downgrade() -> None:
    op.drop_table("device_presence")
    op.drop_index(op.f("ix_lobby_events_lobby_id"), table_name="lobby_events")
    op.drop_table("lobby_events")
    op.drop_index(op.f("ix_participants_lobby_id"), table_name="participants")
    op.drop_index(op.f("ix_participants_device_id"), table_name="participants")
    op.drop_table("participants")
    op.drop_index("uq_lobbies_code_not_closed", table_name="lobbies")
    op.drop_index(op.f("ix_lobbies_code"), table_name="lobbies")
    op.drop_table("lobbies")
