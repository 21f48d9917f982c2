"""FastAPI's native OpenTelemetry, off in every service.

The services export no traces or metrics: their record is one log line per request or event. With the
telemetry on (FastAPI's default since 0.165) every request asked the global OpenTelemetry providers
whether anyone listens, reading environment variables each time: ~40 us of CPU per request in the
lobby's profile, a tenth of a routed ``lobby.get``. Pass as ``FastAPI(telemetry=TELEMETRY_OFF)``.
"""

from __future__ import annotations

from typing import Final

from fastapi.telemetry import TelemetryConfig

TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}
