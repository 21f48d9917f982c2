"""The routing tables: every event of the spec to its service, the proxy's path rewriting."""

from __future__ import annotations

import pytest

from sonalyze_gateway.router import ROUTES, Target, proxy_route_for, route_for

LOBBY_SESSION_EVENTS = [
    "measurement.create_session",
    "measurement.start_speaker",
    "measurement.session_status",
    "measurement.cancel_session",
    "measurement.ready",
    "measurement.speaker_audio_ready",
    "measurement.recording_started",
    "measurement.playback_complete",
    "measurement.recording_uploaded",
    "measurement.error",
]


class TestRouteFor:
    @pytest.mark.parametrize(
        "event", ["lobby.create", "lobby.join", "lobby.leave", "lobby.get", "lobby.start", "lobby.room_snapshot"]
    )
    def test_lobby_namespace_goes_to_lobby(self, event: str) -> None:
        assert route_for(event) is Target.LOBBY

    def test_role_namespace_goes_to_lobby(self) -> None:
        assert route_for("role.assign") is Target.LOBBY

    @pytest.mark.parametrize("event", LOBBY_SESSION_EVENTS)
    def test_measurement_session_events_go_to_lobby(self, event: str) -> None:
        assert route_for(event) is Target.LOBBY

    @pytest.mark.parametrize("event", ["measurement.create_job", "measurement.get_job", "analysis.run", "analysis.x"])
    def test_jobs_and_analysis_go_to_measurement(self, event: str) -> None:
        assert route_for(event) is Target.MEASUREMENT

    def test_simulation_namespace_goes_to_simulation(self) -> None:
        assert route_for("simulation.run") is Target.SIMULATION

    def test_identify_is_answered_by_the_gateway(self) -> None:
        assert route_for("identify") is Target.GATEWAY

    @pytest.mark.parametrize(
        "event",
        [
            "measurement.upload",
            "measurement",
            "lobby",
            "storage.get",
            "identify.x",
            "x.lobby.create",
            "",
            "device.connected",
        ],
    )
    def test_anything_else_has_no_route(self, event: str) -> None:
        assert route_for(event) is None

    def test_the_table_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            ROUTES["x.*"] = Target.LOBBY  # type: ignore[index]


class TestProxyRouteFor:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/v1/measurement/audio", (Target.MEASUREMENT, "/v1/measurement/audio")),
            ("/v1/jobs", (Target.MEASUREMENT, "/v1/jobs")),
            ("/v1/jobs/j1/uploads/a%20b.wav", (Target.MEASUREMENT, "/v1/jobs/j1/uploads/a%20b.wav")),
            ("/v1/simulation/simulate", (Target.SIMULATION, "/simulate")),
            ("/v1/simulation", (Target.SIMULATION, "/")),
            ("/v1/simulation/", (Target.SIMULATION, "/")),
        ],
    )
    def test_served_paths(self, path: str, expected: tuple[Target, str]) -> None:
        assert proxy_route_for(path) == expected

    @pytest.mark.parametrize("path", ["/v1/jobsx", "/v1/lobbies", "/v2/jobs/1", "/v1/simulations/x"])
    def test_other_paths_are_not_proxied(self, path: str) -> None:
        assert proxy_route_for(path) is None
