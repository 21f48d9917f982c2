"""The five services: how each is started and where its health answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# The gateway declines permessage-deflate: its frames are small JSON, and zlib would cost CPU on
# every frame plus ~40 KB of zlib state per socket (40 MB for 1000 phones).
GATEWAY_UVICORN_ARGS: Final = ("--ws", "websockets-sansio", "--ws-per-message-deflate", "false")
DEFAULT_MAX_MESSAGE_BYTES: Final = 65536
WS_FRAME_LIMIT_FACTOR: Final = 4
"""uvicorn buffers a WebSocket message whole before the gateway sees it: its own limit (``--ws-max-size``)
is this many times ``MAX_MESSAGE_BYTES``. A message up to that gets the gateway's ``message_too_large``
error frame and the socket stays open; a larger one is refused by the server itself (close 1009)
before more than that is held in memory."""


def gateway_env_args(env: Mapping[str, str]) -> tuple[str, ...]:
    """``--ws-max-size`` matched to the gateway's ``MAX_MESSAGE_BYTES``."""
    max_message_bytes = int(env.get("MAX_MESSAGE_BYTES") or DEFAULT_MAX_MESSAGE_BYTES)
    return ("--ws-max-size", str(WS_FRAME_LIMIT_FACTOR * max_message_bytes))


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    factory: str
    default_port: int
    health_path: str
    uvicorn_args: tuple[str, ...] = ()  # appended to the uvicorn command line of this service
    env_args: Callable[[Mapping[str, str]], tuple[str, ...]] | None = None  # more, derived from its environment


SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec("storage", "sonalyze_storage.main:create_app", 8004, "/health"),
    ServiceSpec("measurement", "sonalyze_measurement.main:create_app", 8002, "/health"),
    ServiceSpec("simulation", "sonalyze_simulation.main:create_app", 8003, "/health"),
    ServiceSpec("lobby", "sonalyze_lobby.main:create_app", 8001, "/health"),
    ServiceSpec(
        "gateway", "sonalyze_gateway.main:create_app", 8000, "/healthz", GATEWAY_UVICORN_ARGS, gateway_env_args
    ),
)

SERVICE_BY_NAME: Final = {spec.name: spec for spec in SERVICES}
