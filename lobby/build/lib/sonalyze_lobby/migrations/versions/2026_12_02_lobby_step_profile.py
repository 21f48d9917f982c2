"""lobbies: the admin's step_index and profile_id (lobby.step_update / lobby.profile_update)

Revision ID: 2026_12_02_lobby_step_profile
Revises: 2026_11_23_create_lobbies
Create Date: 2026-12-02 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_02_lobby_step_profile"
down_revision: str | None = "2026_11_23_create_lobbies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lobbies") as batch:
        batch.add_column(sa.Column("step_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("profile_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lobbies") as batch:
        batch.drop_column("profile_id")
        batch.drop_column("step_index")
