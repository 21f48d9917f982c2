"""Settings of the measurement service, read from the environment (names as in the spec)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import Field, field_validator

from sonalyze_protocol.settings import ServiceSettings, strip_url

DEFAULT_DEBUG_AUDIO_DIR: Final = Path(__file__).resolve().parents[2] / "debug_audio"
"""``measurement/debug_audio/`` in the source tree."""


class Settings(ServiceSettings):
    measurement_data_dir: Path = Path("measurement_data")
    measurement_max_upload_mb: float = Field(default=50.0, gt=0)
    measurement_debug_audio: bool = False
    measurement_debug_audio_dir: Path = DEFAULT_DEBUG_AUDIO_DIR
    measurement_analysis_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1, le=32)
    measurement_analysis_timeout_s: float = Field(default=120.0, gt=0)
    gateway_url: str = "http://localhost:8005"  # the gateway's internal listener
    storage_url: str = "http://localhost:8004"

    @field_validator("gateway_url", "storage_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return strip_url(value)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.measurement_max_upload_mb * 1024 * 1024)
