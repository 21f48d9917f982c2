"""``measurement.*`` through ``/gateway/handle`` of the real lobby app and database.

The measurement service is a fake behind ``httpx.MockTransport`` (the real one is exercised by
``tests/e2e/test_measurement_protocol.py``); pushes go to the lobby tests' fake gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from sonalyze_lobby.measurement_client import MeasurementClient
from sonalyze_lobby.session_runner import Coordinator, ServiceLobbyStates

Handle = Callable[..., Awaitable[dict[str, Any]]]
SAMPLE_RATE_HZ = 48_000


def make_wav(duration_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(b"\x00\x00" * int(duration_s * sample_rate_hz))
    return buffer.getvalue()


SIGNAL_WAV = make_wav(2.5)


@dataclass
class FakeMeasurementService:
    """Jobs, the signal, announcements, uploads and analysis, as PLAN.md's internal contract describes them."""

    jobs: set[str] = field(default_factory=lambda: {"job-1"})
    announced: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: set[str] = field(default_factory=set)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False
    # contract C1: the signal's JSON carries its hash and length; False: a description without them
    describes_hash: bool = True
    calls: list[str] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if path in ("/v1/measurement/audio", "/v1/measurement/signal"):
            if request.url.params["sample_rate"] != str(SAMPLE_RATE_HZ):
                error = {"code": "bad_request", "message": "sample_rate must be 44100, 48000 or 96000"}
                return httpx.Response(422, json={"error": error})
            if path == "/v1/measurement/audio":
                return httpx.Response(200, content=SIGNAL_WAV, headers={"X-Signal-Id": "sig-48k"})
            described: dict[str, Any] = {"signal_id": "sig-48k", "sample_rate_hz": SAMPLE_RATE_HZ}
            if self.describes_hash:
                described |= {"audio_hash": hashlib.sha256(SIGNAL_WAV).hexdigest(), "total_duration_s": 2.5}
            return httpx.Response(200, json=described)
        if (m := re.fullmatch(r"/v1/measurement/sessions/([^/]+)", path)) and request.method == "PUT":
            body = json.loads(request.content)
            if body["job_id"] not in self.jobs:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such job"}})
            self.sessions[m.group(1)] = body
            return httpx.Response(200, json={"session_id": m.group(1), **body})
        if match := re.fullmatch(r"/v1/jobs/([^/]+)(/.*)?", path):
            job_id, rest = match.group(1), match.group(2) or ""
            if job_id not in self.jobs:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such job"}})
            if rest == "" and request.method == "GET":
                return httpx.Response(200, json={"job_id": job_id})
            if (m := re.fullmatch(r"/recordings/(.+)", rest)) and request.method == "PUT":
                self.announced[m.group(1)] = json.loads(request.content)
                return httpx.Response(200, json={"upload_name": m.group(1)})
            if (m := re.fullmatch(r"/uploads/(.+)", rest)) and request.method == "GET":
                if m.group(1) in self.uploads:
                    return httpx.Response(200, json={"name": m.group(1)})
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such upload"}})
            if rest == "/analyze" and request.method == "POST":
                results = [{"upload_name": n, **self.announced.get(n, {})} for n in sorted(self.uploads)]
                return httpx.Response(200, json={"job_id": job_id, "results": results, "summary": {"n": len(results)}})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


@pytest.fixture
def measurement() -> FakeMeasurementService:
    return FakeMeasurementService()


@pytest.fixture
async def coordinator(app: Any, measurement: FakeMeasurementService) -> AsyncIterator[Coordinator]:
    """Replaces the app's coordinator by one that talks to the fake measurement service."""
    lobby = app.state.lobby
    original = lobby.coordinator
    await original.aclose()
    async with httpx.AsyncClient(transport=httpx.MockTransport(measurement.handler)) as http:
        coordinator = Coordinator(
            settings=lobby.settings,
            pusher=lambda: lobby.broadcaster,
            measurement=MeasurementClient("http://measurement.test", http, token="t"),
            lobby_states=ServiceLobbyStates(lobby),
        )
        lobby.coordinator = coordinator
        yield coordinator
        await coordinator.aclose()
        lobby.coordinator = original


@dataclass
class Lobby:
    lobby_id: str
    admin: str
    speakers: list[str]
    mics: list[str]
    outsider: str


@pytest.fixture
async def lobby(handle: Handle, devices: Callable[[int], list[str]], coordinator: Coordinator) -> Lobby:
    """A lobby whose admin is alone with 2 speakers and 2 microphones (all joined), plus an outsider."""
    admin, spk1, spk2, mic1, mic2, outsider = devices(6)
    created = await handle(admin, "lobby.create")
    for device in (spk1, spk2, mic1, mic2):
        joined = await handle(device, "lobby.join", {"code": created["data"]["code"]})
        assert "data" in joined, joined
    return Lobby(created["data"]["lobby_id"], admin, [spk1, spk2], [mic1, mic2], outsider)


def line_up(lobby: Lobby, job_id: str = "job-1") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lobby_id": lobby.lobby_id,
        "speakers": [{"device_id": d, "slot_id": f"speaker_{i + 1}"} for i, d in enumerate(lobby.speakers)],
        "microphones": [{"device_id": d, "slot_id": f"mic_{i + 1}"} for i, d in enumerate(lobby.mics)],
    }


async def lobby_state(handle: Handle, lobby: Lobby) -> str:
    return (await handle(lobby.admin, "lobby.get", {"lobby_id": lobby.lobby_id}))["data"]["state"]


def error_code(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    return reply["error"]["code"]


class TestCreateSession:
    async def test_answers_the_session_and_runs_the_lobby(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService, gateway: Any
    ) -> None:
        reply = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        data = reply["data"]
        assert data["state"] == "idle"
        assert data["session_id"]
        assert data["speakers"] == line_up(lobby)["speakers"]
        assert data["microphones"] == line_up(lobby)["microphones"]
        assert data["current_speaker"] == {"device_id": lobby.speakers[0], "slot_id": "speaker_1"}
        assert data["audio_url"] == "/v1/measurement/audio?sample_rate=48000"
        assert data["signal_id"] == "sig-48k"
        assert await lobby_state(handle, lobby) == "measurement_running"
        assert measurement.sessions[data["session_id"]] == {"job_id": "job-1", "signal_id": "sig-48k"}
        assert measurement.announced == {}  # each recording is announced when it is reported
        assert "state_changed" in gateway.types_to(lobby.mics[0])

    async def test_second_session_in_the_same_lobby_is_a_conflict(self, handle: Handle, lobby: Lobby) -> None:
        first = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        second = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        assert error_code(second) == "conflict"
        assert first["data"]["session_id"] in second["error"]["message"]

    async def test_concurrent_creations_give_one_session(self, handle: Handle, lobby: Lobby) -> None:
        replies = await asyncio.gather(
            *(handle(lobby.admin, "measurement.create_session", line_up(lobby)) for _ in range(3))
        )
        assert sorted("data" in r for r in replies) == [False, False, True]
        assert all(error_code(r) == "conflict" for r in replies if "error" in r)

    async def test_only_the_admin_may_create(self, handle: Handle, lobby: Lobby) -> None:
        reply = await handle(lobby.mics[0], "measurement.create_session", line_up(lobby))
        assert error_code(reply) == "forbidden"
        assert await lobby_state(handle, lobby) == "open"

    async def test_non_admin_is_forbidden_before_the_line_up_is_judged(self, handle: Handle, lobby: Lobby) -> None:
        body = {**line_up(lobby), "speakers": [line_up(lobby)["microphones"][0]]}  # also a bad line-up
        assert error_code(await handle(lobby.mics[0], "measurement.create_session", body)) == "forbidden"

    async def test_sample_rate_the_measurement_service_refuses_is_a_bad_request(
        self, handle: Handle, lobby: Lobby
    ) -> None:
        reply = await handle(lobby.admin, "measurement.create_session", {**line_up(lobby), "sample_rate_hz": 22_050})
        assert error_code(reply) == "bad_request"
        assert "sample_rate" in reply["error"]["message"]
        assert await lobby_state(handle, lobby) == "open"

    async def test_every_device_must_be_joined(self, handle: Handle, lobby: Lobby) -> None:
        body = line_up(lobby)
        body["microphones"][1]["device_id"] = lobby.outsider
        reply = await handle(lobby.admin, "measurement.create_session", body)
        assert error_code(reply) == "not_found"
        assert lobby.outsider in reply["error"]["message"]

    async def test_unknown_job_is_not_found_and_the_lobby_stays_open(self, handle: Handle, lobby: Lobby) -> None:
        reply = await handle(lobby.admin, "measurement.create_session", line_up(lobby, job_id="nope"))
        assert error_code(reply) == "not_found"
        assert "nope" in reply["error"]["message"]
        assert await lobby_state(handle, lobby) == "open"

    async def test_unreachable_measurement_service_is_service_unavailable(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService
    ) -> None:
        measurement.down = True
        reply = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        assert error_code(reply) == "service_unavailable"
        assert await lobby_state(handle, lobby) == "open"

    async def test_database_down_is_service_unavailable(self, app: Any, handle: Handle, lobby: Lobby) -> None:
        """A database outage in a ``measurement.*`` handler answers like one in ``lobby.*``, not internal_error."""
        from sonalyze_db import make_engine, make_sessionmaker

        working = app.state.lobby.database
        down = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        app.state.lobby.database = replace(working, sessionmaker=make_sessionmaker(down))
        try:
            reply = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        finally:
            app.state.lobby.database = working
            await down.dispose()
        assert error_code(reply) == "service_unavailable"
        assert await lobby_state(handle, lobby) == "open"

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            (lambda b: b.update(speakers=[]), "data.speakers"),
            (lambda b: b["microphones"].append(dict(b["speakers"][0])), "both"),
            (lambda b: b["speakers"][0].update(slot_id="../x"), "data.speakers.0.slot_id"),
            (lambda b: b.update(job_id="../etc"), "data.job_id"),
            (lambda b: b.pop("lobby_id"), "data.lobby_id"),
        ],
    )
    async def test_bad_line_up_is_a_bad_request(
        self, handle: Handle, lobby: Lobby, change: Callable[[dict[str, Any]], Any], fragment: str
    ) -> None:
        body = line_up(lobby)
        change(body)
        reply = await handle(lobby.admin, "measurement.create_session", body)
        assert error_code(reply) == "bad_request"
        assert fragment in reply["error"]["message"]


class TestProtocol:
    async def test_whole_session_through_the_handlers(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService, gateway: Any,
        coordinator: Coordinator,
    ) -> None:  # fmt: skip
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        ref = {"session_id": session_id}
        assert (await handle(lobby.admin, "measurement.start_speaker", ref))["data"]["state"] == "awaiting_ready"
        for index, speaker in enumerate(lobby.speakers):
            for device in (speaker, *lobby.mics):
                assert "data" in await handle(device, "measurement.ready", ref)
            request_audio = gateway.to(speaker, "measurement.request_audio")[-1]
            assert request_audio["audio_url"] == "/v1/measurement/audio?sample_rate=48000"
            audio_hash = hashlib.sha256(SIGNAL_WAV).hexdigest()
            await handle(speaker, "measurement.speaker_audio_ready", {**ref, "audio_hash": audio_hash})
            for mic in lobby.mics:
                await handle(mic, "measurement.recording_started", ref)
            await handle(speaker, "measurement.playback_complete", ref)
            for mic in lobby.mics:
                stop = gateway.to(mic, "measurement.stop_recording")[-1]
                assert stop["job_id"] == "job-1"
                assert stop["upload_name"] == f"speaker_{index + 1}__mic_{lobby.mics.index(mic) + 1}.wav"
                uploaded = {**ref, "upload_name": stop["upload_name"]}
                missing = await handle(mic, "measurement.recording_uploaded", uploaded)
                assert error_code(missing) == "not_found"
                measurement.uploads.add(stop["upload_name"])
                counted = await handle(mic, "measurement.recording_uploaded", uploaded)
                assert counted["data"]["counted"] is True
            done = gateway.to(lobby.admin, "measurement.speaker_complete")[-1]
            assert done["speaker_slot_id"] == f"speaker_{index + 1}"
        complete = gateway.to(lobby.admin, "measurement.session_complete")
        assert len(complete) == 1
        assert len(complete[0]["recordings"]) == 4
        assert await lobby_state(handle, lobby) == "open"
        for _ in range(100):
            if gateway.to(lobby.admin, "measurement.analysis_complete"):
                break
            await asyncio.sleep(0.01)
        (analysis,) = gateway.to(lobby.mics[1], "measurement.analysis_complete")
        assert analysis["job_id"] == "job-1"
        assert {r["upload_name"] for r in analysis["results"]} == set(measurement.uploads)
        assert analysis["results"][0]["speaker_slot_id"] == "speaker_1"
        status = await handle(lobby.mics[0], "measurement.session_status", ref)
        assert status["data"]["state"] == "complete"

    async def test_message_out_of_step_names_the_step(self, handle: Handle, lobby: Lobby) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        reply = await handle(lobby.speakers[0], "measurement.playback_complete", {"session_id": session_id})
        assert error_code(reply) == "invalid_state"
        assert "idle" in reply["error"]["message"]

    async def test_outsider_is_forbidden_and_unknown_session_not_found(self, handle: Handle, lobby: Lobby) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        assert error_code(await handle(lobby.outsider, "measurement.session_status", {"session_id": session_id})) == (
            "forbidden"
        )
        assert error_code(await handle(lobby.outsider, "measurement.ready", {"session_id": session_id})) == "forbidden"
        assert error_code(await handle(lobby.admin, "measurement.session_status", {"session_id": "x"})) == "not_found"

    async def test_cancel_tells_everyone_and_reopens_the_lobby(
        self, handle: Handle, lobby: Lobby, gateway: Any
    ) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        await handle(lobby.admin, "measurement.start_speaker", {"session_id": session_id})
        reply = await handle(lobby.admin, "measurement.cancel_session", {"session_id": session_id, "reason": "noise"})
        assert reply["data"]["state"] == "cancelled"
        for device in (*lobby.speakers, *lobby.mics):
            assert gateway.to(device, "measurement.session_cancelled")[-1]["reason"] == "noise"
        assert await lobby_state(handle, lobby) == "open"
        again = await handle(lobby.admin, "measurement.create_session", line_up(lobby))
        assert again["data"]["state"] == "idle"

    async def test_device_error_reaches_everyone_and_the_admin_can_retry(
        self, handle: Handle, lobby: Lobby, gateway: Any
    ) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        ref = {"session_id": session_id}
        await handle(lobby.admin, "measurement.start_speaker", ref)
        report = {**ref, "error_message": "mic busy", "error_code": "x"}
        reply = await handle(lobby.mics[1], "measurement.error", report)
        assert reply["data"]["state"] == "failed"
        error = gateway.to(lobby.speakers[0], "measurement.error")[-1]
        assert error["device_id"] == lobby.mics[1]
        assert error["error_message"] == "mic busy"
        retry = await handle(lobby.admin, "measurement.start_speaker", ref)
        assert retry["data"]["state"] == "awaiting_ready"
        assert retry["data"]["cycle"] == 2

    async def test_disconnect_and_reconnect_resend_the_command(
        self, handle: Handle, lobby: Lobby, gateway: Any
    ) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", line_up(lobby)))["data"]["session_id"]
        await handle(lobby.admin, "measurement.start_speaker", {"session_id": session_id})
        await handle(lobby.mics[0], "device.disconnected")
        status = await handle(lobby.admin, "measurement.session_status", {"session_id": session_id})
        assert status["data"]["disconnected_device_ids"] == [lobby.mics[0]]
        await handle(lobby.mics[0], "device.connected")
        assert len(gateway.to(lobby.mics[0], "measurement.start_measurement")) == 2


def app_line_up(lobby: Lobby, job_id: str = "job-1") -> dict[str, Any]:
    """``measurement.create_session`` as the app sends it (slot labels, ``speaker-1`` style ids)."""
    return {
        "job_id": job_id,
        "lobby_id": lobby.lobby_id,
        "speakers": [{"device_id": d, "slot_id": f"speaker-{i + 1}", "slot_label": f"Speaker {i + 1}"}
                     for i, d in enumerate(lobby.speakers)],
        "microphones": [{"device_id": d, "slot_id": f"microphone-{i + 1}", "slot_label": f"Mic {i + 1}"}
                        for i, d in enumerate(lobby.mics)],
    }  # fmt: skip


class TestAppDialect:
    async def test_signal_is_described_without_downloading_the_wav(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService, gateway: Any
    ) -> None:
        reply = await handle(lobby.admin, "measurement.create_session", app_line_up(lobby))
        assert reply["data"]["signal_id"] == "sig-48k"
        assert reply["data"]["audio_duration_seconds"] == 2.5
        assert "GET /v1/measurement/audio" not in measurement.calls
        session_id = reply["data"]["session_id"]
        # registered with the measurement service, so /v1/measurement/audio?session_id= serves its signal
        assert measurement.sessions[session_id] == {"job_id": "job-1", "signal_id": "sig-48k"}
        await handle(lobby.admin, "measurement.start_speaker", {"session_id": session_id})
        for device in (lobby.speakers[0], *lobby.mics):
            await handle(device, "measurement.ready", {"session_id": session_id})
        request = gateway.to(lobby.speakers[0], "measurement.request_audio")[-1]
        assert request["expected_hash"] == hashlib.sha256(SIGNAL_WAV).hexdigest()

    async def test_a_description_without_hash_and_length_is_service_unavailable(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService
    ) -> None:
        measurement.describes_hash = False
        reply = await handle(lobby.admin, "measurement.create_session", app_line_up(lobby))
        assert reply["error"]["code"] == "service_unavailable", reply
        assert "audio_hash" in reply["error"]["message"]
        assert "GET /v1/measurement/audio" not in measurement.calls

    async def test_whole_session_with_the_apps_names_aliases_and_relay(
        self, handle: Handle, lobby: Lobby, measurement: FakeMeasurementService, gateway: Any
    ) -> None:
        session_id = (await handle(lobby.admin, "measurement.create_session", app_line_up(lobby)))["data"]["session_id"]
        ref = {"session_id": session_id}
        await handle(lobby.admin, "measurement.start_speaker", ref)
        for index, speaker in enumerate(lobby.speakers):
            slot = f"speaker-{index + 1}"
            start = gateway.to(speaker, "measurement.start_measurement")[-1]
            assert start["current_speaker_slot_id"] == slot
            for device in (speaker, *lobby.mics):
                assert "data" in await handle(device, "measurement.client_ready", {**ref, "device_id": device})
            assert "data" in await handle(speaker, "measurement.speaker_audio_ready", {**ref, "device_id": speaker})
            for mic in lobby.mics:
                await handle(mic, "measurement.recording_started", {**ref, "device_id": mic})
            assert "data" in await handle(speaker, "measurement.speaker_finished", ref)
            for mic in lobby.mics:
                stop = gateway.to(mic, "measurement.stop_recording")[-1]
                assert stop["upload_endpoint"] == "/v1/jobs/job-1/uploads/"
                name = f"recording_{mic}_{stop['speaker_slot_id']}.wav"
                measurement.uploads.add(name)
                counted = await handle(mic, "measurement.recording_uploaded", {**ref, "upload_name": name})
                assert counted["data"]["counted"] is True, counted
                mic_slot = f"microphone-{lobby.mics.index(mic) + 1}"
                assert measurement.announced[name] == {
                    "speaker_slot_id": slot, "mic_slot_id": mic_slot, "device_id": mic, "signal_id": "sig-48k",
                }  # fmt: skip
            done = gateway.to(lobby.admin, "measurement.speaker_complete")[-1]
            assert (done["completed_speaker_slot_id"], done["remaining_speakers"]) == (slot, 1 - index)
        complete = gateway.to(lobby.mics[0], "measurement.session_complete")[-1]
        assert complete["completed_speakers"] == ["speaker-1", "speaker-2"]
        phases = [p["phase"] for p in gateway.to(lobby.mics[0], "measurement.phase_update")]
        assert {"waiting_for_ready", "audio_requested", "recording", "playing", "uploading", "processing"} <= set(
            phases
        )
        assert gateway.to(lobby.admin, "measurement.phase_update"), "the admin follows the phases too"

        results = {"rt": {"rt60_s": 0.61}, "display_metrics": []}
        relay = {**ref, "job_id": "job-1", "results": results}
        assert error_code(await handle(lobby.mics[0], "measurement.broadcast_results", relay)) == "forbidden"
        assert error_code(await handle(lobby.admin, "measurement.broadcast_results", {**ref, "results": [1]})) == (
            "bad_request"
        )
        reply = await handle(lobby.admin, "measurement.broadcast_results", relay)
        assert sorted(reply["data"]["recipients"]) == sorted([*lobby.speakers, *lobby.mics])
        relayed = gateway.to(lobby.speakers[1], "measurement.analysis_results")
        assert relayed[-1]["results"] == results and relayed[-1]["session_id"] == session_id
        assert not [p for p in gateway.pushes if p.event == "measurement.analysis_results" and lobby.admin in p.device_ids
                    and p.data.get("source") == "host"]  # fmt: skip


async def test_concurrent_first_signal_lookups_share_one_description() -> None:
    """The start-up warm-up and a first create_session must not ask the measurement service twice at once."""
    measurement = FakeMeasurementService()
    async with httpx.AsyncClient(transport=httpx.MockTransport(measurement.handler)) as http:
        client = MeasurementClient("http://measurement.test", http, token="t")
        first, second = await asyncio.gather(client.get_signal(SAMPLE_RATE_HZ), client.get_signal(SAMPLE_RATE_HZ))
    assert first == second
    assert measurement.calls == ["GET /v1/measurement/signal"]
