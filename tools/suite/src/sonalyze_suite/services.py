"""The five services: how each is started and where its health answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The gateway declines permessage-deflate: its frames are small JSON, and zlib would cost CPU on
# every frame plus ~40 KB of zlib state per socket (40 MB for 1000 phones).
GATEWAY_UVICORN_ARGS: Final = ("--ws", "websockets-sansio", "--ws-per-message-deflate", "false")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    factory: str
    default_port: int
    health_path: str
    uvicorn_args: tuple[str, ...] = ()  # appended to the uvicorn command line of this service


SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec("storage", "sonalyze_storage.main:create_app", 8004, "/health"),
    ServiceSpec("measurement", "sonalyze_measurement.main:create_app", 8002, "/health"),
    ServiceSpec("simulation", "sonalyze_simulation.main:create_app", 8003, "/health"),
    ServiceSpec("lobby", "sonalyze_lobby.main:create_app", 8001, "/health"),
    ServiceSpec("gateway", "sonalyze_gateway.main:create_app", 8000, "/healthz", GATEWAY_UVICORN_ARGS),
)

SERVICE_BY_NAME: Final = {spec.name: spec for spec in SERVICES}
