"""The five services: how each is started and where its health answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    factory: str
    default_port: int
    health_path: str


SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec("storage", "sonalyze_storage.main:create_app", 8004, "/health"),
    ServiceSpec("measurement", "sonalyze_measurement.main:create_app", 8002, "/health"),
    ServiceSpec("simulation", "sonalyze_simulation.main:create_app", 8003, "/health"),
    ServiceSpec("lobby", "sonalyze_lobby.main:create_app", 8001, "/health"),
    ServiceSpec("gateway", "sonalyze_gateway.main:create_app", 8000, "/healthz"),
)

SERVICE_BY_NAME: Final = {spec.name: spec for spec in SERVICES}
