"""measurement_sessions: the coordinator's state per session, its timers' deadlines and its lease

Revision ID: 2026_12_02_measurement_sessions
Revises: 2026_12_02_lobby_step_profile
Create Date: 2026-12-02 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_measurement_sessions"
down_revision: str | None = "2026_12_02_lobby_step_profile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measurement_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("lobby_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("owner_url", sa.String(length=256), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lobby_id"], ["lobbies.id"], name=op.f("fk_measurement_sessions_lobby_id_lobbies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_measurement_sessions")),
    )
    op.create_index(op.f("ix_measurement_sessions_lobby_id"), "measurement_sessions", ["lobby_id"])
    op.create_index(op.f("ix_measurement_sessions_running"), "measurement_sessions", ["running"])


def downgrade() -> None:
    op.drop_index(op.f("ix_measurement_sessions_running"), table_name="measurement_sessions")
    op.drop_index(op.f("ix_measurement_sessions_lobby_id"), table_name="measurement_sessions")
    op.drop_table("measurement_sessions")
