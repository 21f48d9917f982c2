"""Initial schema: devices, lobbies, participants, measurements, analysis outputs, simulation jobs and results.

Revision ID: 2026_11_23_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_11_23_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the column types as the models have them (UTCDateTime is DateTime(timezone=True) underneath)
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=True),
        sa.Column("last_seen_at", TIMESTAMP, nullable=True),
        sa.Column("meta", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_id", name=op.f("uq_devices_device_id")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_created_at"), ["created_at"], unique=False)

    op.create_table(
        "lobbies",
        sa.Column("lobby_id", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("admin_device_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=100), nullable=True),
        sa.Column("opened_at", TIMESTAMP, nullable=True),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.Column("meta", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lobbies")),
        sa.UniqueConstraint("lobby_id", name=op.f("uq_lobbies_lobby_id")),
    )
    with op.batch_alter_table("lobbies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lobbies_code"), ["code"], unique=False)
        batch_op.create_index(batch_op.f("ix_lobbies_created_at"), ["created_at"], unique=False)

    op.create_table(
        "measurements",
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("upload_name", sa.String(length=200), nullable=False),
        sa.Column("lobby_id", sa.String(length=200), nullable=True),
        sa.Column("device_id", sa.String(length=200), nullable=True),
        sa.Column("speaker_slot_id", sa.String(length=100), nullable=True),
        sa.Column("mic_slot_id", sa.String(length=100), nullable=True),
        sa.Column("signal_id", sa.String(length=200), nullable=True),
        sa.Column("sample_rate_hz", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", TIMESTAMP, nullable=True),
        sa.Column("meta", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
        sa.UniqueConstraint("job_id", "upload_name", name=op.f("uq_measurements_job_id_upload_name")),
    )
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_measurements_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_measurements_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_measurements_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_measurements_lobby_id"), ["lobby_id"], unique=False)

    op.create_table(
        "simulation_jobs",
        sa.Column("status", sa.String(length=100), nullable=False),
        sa.Column("method", sa.String(length=100), nullable=True),
        sa.Column("device_id", sa.String(length=200), nullable=True),
        sa.Column("lobby_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("request", JSON_DOCUMENT, nullable=False),
        sa.Column("summary", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulation_jobs")),
    )
    with op.batch_alter_table("simulation_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_simulation_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_simulation_jobs_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_simulation_jobs_lobby_id"), ["lobby_id"], unique=False)

    op.create_table(
        "analysis_outputs",
        sa.Column("measurement_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("upload_name", sa.String(length=200), nullable=False),
        sa.Column("analysis_run", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=100), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("speaker_slot_id", sa.String(length=100), nullable=True),
        sa.Column("mic_slot_id", sa.String(length=100), nullable=True),
        sa.Column("metrics", JSON_DOCUMENT, nullable=False),
        sa.Column("quality", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id", "upload_name"],
            ["measurements.job_id", "measurements.upload_name"],
            name=op.f("fk_analysis_outputs_job_id_upload_name_measurements"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["measurement_id"],
            ["measurements.id"],
            name=op.f("fk_analysis_outputs_measurement_id_measurements"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_outputs")),
        sa.UniqueConstraint(
            "measurement_id", "analysis_run", name=op.f("uq_analysis_outputs_measurement_id_analysis_run")
        ),
    )
    with op.batch_alter_table("analysis_outputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analysis_outputs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_analysis_outputs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_analysis_outputs_measurement_id"), ["measurement_id"], unique=False)

    op.create_table(
        "participants",
        sa.Column("lobby_id", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("role_slot_id", sa.String(length=100), nullable=True),
        sa.Column("joined_at", TIMESTAMP, nullable=True),
        sa.Column("left_at", TIMESTAMP, nullable=True),
        sa.Column("meta", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["lobby_id"],
            ["lobbies.lobby_id"],
            name=op.f("fk_participants_lobby_id_lobbies"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("lobby_id", "device_id", name=op.f("uq_participants_lobby_id_device_id")),
    )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_participants_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_participants_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_participants_lobby_id"), ["lobby_id"], unique=False)

    op.create_table(
        "simulation_results",
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("source_id", sa.String(length=100), nullable=True),
        sa.Column("microphone_id", sa.String(length=100), nullable=True),
        sa.Column("metrics", JSON_DOCUMENT, nullable=False),
        sa.Column("payload", JSON_DOCUMENT, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["simulation_jobs.id"],
            name=op.f("fk_simulation_results_job_id_simulation_jobs"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulation_results")),
    )
    with op.batch_alter_table("simulation_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_simulation_results_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_simulation_results_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("simulation_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_simulation_results_job_id"))
        batch_op.drop_index(batch_op.f("ix_simulation_results_created_at"))

    op.drop_table("simulation_results")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participants_lobby_id"))
        batch_op.drop_index(batch_op.f("ix_participants_device_id"))
        batch_op.drop_index(batch_op.f("ix_participants_created_at"))

    op.drop_table("participants")
    with op.batch_alter_table("analysis_outputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_outputs_measurement_id"))
        batch_op.drop_index(batch_op.f("ix_analysis_outputs_job_id"))
        batch_op.drop_index(batch_op.f("ix_analysis_outputs_created_at"))

    op.drop_table("analysis_outputs")
    with op.batch_alter_table("simulation_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_simulation_jobs_lobby_id"))
        batch_op.drop_index(batch_op.f("ix_simulation_jobs_device_id"))
        batch_op.drop_index(batch_op.f("ix_simulation_jobs_created_at"))

    op.drop_table("simulation_jobs")
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_measurements_lobby_id"))
        batch_op.drop_index(batch_op.f("ix_measurements_job_id"))
        batch_op.drop_index(batch_op.f("ix_measurements_device_id"))
        batch_op.drop_index(batch_op.f("ix_measurements_created_at"))

    op.drop_table("measurements")
    with op.batch_alter_table("lobbies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lobbies_created_at"))
        batch_op.drop_index(batch_op.f("ix_lobbies_code"))

    op.drop_table("lobbies")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_created_at"))

    op.drop_table("devices")
