"""Settings of the lobby service, read from the environment."""

from __future__ import annotations

from pydantic import Field, field_validator

from sonalyze_db import PoolSettings, normalize_database_url
from sonalyze_lobby.measurement_protocol.state import Timeouts
from sonalyze_protocol.settings import ServiceSettings, strip_url


class Settings(ServiceSettings):
    database_url: str = "sqlite+aiosqlite:///./lobby.db"
    run_migrations: bool = True
    gateway_url: str = "http://localhost:8005"  # the gateway's internal listener
    measurement_url: str = "http://localhost:8002"
    storage_url: str = "http://localhost:8004"
    # a push that takes longer is given up (logged); the change itself is already committed
    broadcast_timeout_seconds: float = Field(default=3.0, gt=0)
    # serialised JSON size of one room snapshot; clients send it through the gateway, whose frames are capped too
    room_snapshot_max_bytes: int = Field(default=32_768, ge=256)
    events_page_max: int = Field(default=500, ge=1)
    # how phones reach the gateway (e.g. https://sonalyze.example); makes ``upload_endpoint`` absolute.
    # Empty: the endpoint is a path, resolved against the address the phone already uses.
    public_base_url: str = ""

    @field_validator("public_base_url")
    @classmethod
    def _public_base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("PUBLIC_BASE_URL must start with http:// or https://")
        return value

    # the measurement protocol's waits (the playback wait is its margin plus the signal's own length)
    measurement_ready_timeout_s: float = Field(default=20.0, gt=0)
    measurement_audio_timeout_s: float = Field(default=30.0, gt=0)
    measurement_recording_timeout_s: float = Field(default=10.0, gt=0)
    measurement_playback_margin_s: float = Field(default=15.0, gt=0)
    measurement_upload_timeout_s: float = Field(default=60.0, gt=0)
    measurement_idle_timeout_s: float = Field(default=900.0, gt=0)
    # a session's whole analysis (every recording); the measurement service's MEASUREMENT_ANALYSIS_TIMEOUT_S
    # is its limit per recording
    measurement_session_analysis_timeout_s: float = Field(default=180.0, gt=0)
    measurement_disconnect_grace_s: float = Field(default=10.0, gt=0)
    measurement_sample_rate_hz: int = Field(default=48_000, ge=8_000, le=192_000)
    # finished sessions stay readable through session_status this long
    measurement_session_retention_s: float = Field(default=3600.0, gt=0)

    @property
    def protocol_timeouts(self) -> Timeouts:
        return Timeouts(
            ready_s=self.measurement_ready_timeout_s,
            audio_s=self.measurement_audio_timeout_s,
            recording_s=self.measurement_recording_timeout_s,
            playback_margin_s=self.measurement_playback_margin_s,
            upload_s=self.measurement_upload_timeout_s,
            idle_s=self.measurement_idle_timeout_s,
            analysis_s=self.measurement_session_analysis_timeout_s,
            disconnect_grace_s=self.measurement_disconnect_grace_s,
        )

    # replicas (one database): each measurement session is driven by one replica, its lease renewed every
    # third of SESSION_LEASE_S; another replica takes over once it expires. REPLICA_ID must differ between
    # replicas and stay the same across a replica's restarts (it takes its own sessions back at once);
    # REPLICA_URL is where the other replicas forward events of sessions this one drives.
    replica_id: str = Field(default="lobby", min_length=1, max_length=128)
    replica_url: str = ""
    session_lease_s: float = Field(default=5.0, gt=0)

    # database connections kept / added under load / waited for (PostgreSQL; SQLite's readers)
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)

    @property
    def database_pool(self) -> PoolSettings:
        return PoolSettings(self.database_pool_size, self.database_max_overflow, self.database_pool_timeout_seconds)

    @field_validator("gateway_url", "measurement_url", "storage_url", "replica_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return strip_url(value)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Plain ``postgresql://`` / ``sqlite://`` URLs get the async drivers this service runs on."""
        return normalize_database_url(value)
