"""Where things go: the event routing table and the HTTP proxy's path table, both plain data.

An event is looked up by its exact name first, then by its namespace (``lobby.*``); no match means
``unknown_event``. ``identify`` is the one event the gateway answers itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Target(StrEnum):
    GATEWAY = "gateway"
    LOBBY = "lobby"
    MEASUREMENT = "measurement"
    SIMULATION = "simulation"


ROUTES: Final[Mapping[str, Target]] = MappingProxyType(
    {
        "identify": Target.GATEWAY,
        "lobby.*": Target.LOBBY,
        "role.*": Target.LOBBY,
        # the measurement session is stateful and lives in the lobby's coordinator
        "measurement.create_session": Target.LOBBY,
        "measurement.start_speaker": Target.LOBBY,
        "measurement.session_status": Target.LOBBY,
        "measurement.cancel_session": Target.LOBBY,
        "measurement.ready": Target.LOBBY,
        "measurement.speaker_audio_ready": Target.LOBBY,
        "measurement.recording_started": Target.LOBBY,
        "measurement.playback_complete": Target.LOBBY,
        "measurement.recording_uploaded": Target.LOBBY,
        "measurement.error": Target.LOBBY,
        # the app's names: older builds' aliases of ready / playback_complete, and the host's relay of results
        "measurement.client_ready": Target.LOBBY,
        "measurement.speaker_finished": Target.LOBBY,
        "measurement.broadcast_results": Target.LOBBY,
        "measurement.create_job": Target.MEASUREMENT,
        "measurement.get_job": Target.MEASUREMENT,
        "measurement.get_audio_info": Target.MEASUREMENT,
        "analysis.*": Target.MEASUREMENT,
        "simulation.*": Target.SIMULATION,
    }
)


def route_for(event: str) -> Target | None:
    """The target serving ``event``, or None when no entry matches."""
    target = ROUTES.get(event)
    if target is None:
        namespace, dot, _ = event.partition(".")
        if dot:
            target = ROUTES.get(namespace + ".*")
    return target


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """Requests under ``prefix`` go to ``target``; ``strip_prefix`` drops the prefix from the forwarded path."""

    prefix: str
    target: Target
    strip_prefix: bool


PROXY_ROUTES: Final[tuple[ProxyRoute, ...]] = (
    ProxyRoute("/v1/measurement", Target.MEASUREMENT, strip_prefix=False),
    ProxyRoute("/v1/jobs", Target.MEASUREMENT, strip_prefix=False),
    ProxyRoute("/v1/simulation", Target.SIMULATION, strip_prefix=True),
)


def proxy_route_for(path: str) -> tuple[Target, str] | None:
    """``(target, upstream path)`` for a request path, or None when the proxy does not serve it.

    ``path`` is the raw (still percent-encoded) path, so what the client sent reaches the service unchanged.
    """
    for route in PROXY_ROUTES:
        if path == route.prefix or path.startswith(route.prefix + "/"):
            if not route.strip_prefix:
                return route.target, path
            return route.target, path[len(route.prefix) :] or "/"
    return None
