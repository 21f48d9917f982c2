"""The 11-step protocol with the real gateway, lobby and measurement processes and scripted phones.

The microphones upload real WAVs through the gateway's HTTP proxy: the service's own signal convolved
with a synthetic room (direct sound plus an exponential decay of known RT60), delayed and with a little
noise, so the analysis at the end has something true to find.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import numpy as np
import pytest
import soundfile
from scipy.signal import fftconvolve

from sonalyze_devices.client import DeviceClient
from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e
Phone = DeviceClient  # a scripted device on the gateway's /ws

SAMPLE_RATE_HZ: Final = 48_000
ROOM_RT60_S: Final = 0.6
END_EVENTS: Final = ("measurement.session_complete", "measurement.session_cancelled", "measurement.error")


def room_impulse_response(rt60_s: float, sample_rate_hz: int, seed: int) -> np.ndarray:
    """A direct sound then exponentially decaying noise: energy falls 60 dB in ``rt60_s``."""
    rng = np.random.default_rng(seed)
    n_samples = int(1.5 * rt60_s * sample_rate_hz)
    t_s = np.arange(n_samples) / sample_rate_hz
    tail = rng.standard_normal(n_samples) * 10 ** (-3 * t_s / rt60_s) * 0.05
    tail[: int(0.003 * sample_rate_hz)] = 0.0  # the first reflections arrive a few ms after the direct sound
    tail[0] = 1.0
    return tail


def recording_wav(signal: np.ndarray, impulse_response: np.ndarray, delay_s: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    wet = fftconvolve(signal, impulse_response)
    wet = np.concatenate([np.zeros(int(delay_s * SAMPLE_RATE_HZ)), wet, np.zeros(SAMPLE_RATE_HZ // 2)])
    wet = 0.5 * wet / np.max(np.abs(wet))
    wet += rng.standard_normal(wet.size) * 10 ** (-65 / 20) * 0.5
    buffer = io.BytesIO()
    soundfile.write(buffer, wet.astype(np.float32), SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class Room:
    """One lobby: the admin, speakers and microphones all joined, a measurement job, an HTTP client."""

    admin: Phone
    speakers: list[Phone]
    mics: list[Phone]
    lobby_id: str
    job_id: str
    http: httpx.AsyncClient

    def line_up(self) -> dict[str, Any]:
        speakers = [{"device_id": p.device_id, "slot_id": f"speaker_{i + 1}"} for i, p in enumerate(self.speakers)]
        mics = [{"device_id": p.device_id, "slot_id": f"mic_{i + 1}"} for i, p in enumerate(self.mics)]
        return {"job_id": self.job_id, "lobby_id": self.lobby_id, "speakers": speakers, "microphones": mics}


async def make_room(suite: Suite, phone: Callable[[str], Awaitable[Phone]], n_speakers: int, n_mics: int) -> Room:
    tag = uuid.uuid4().hex[:6]
    admin = await phone(f"admin-{tag}")
    speakers = [await phone(f"spk{i + 1}-{tag}") for i in range(n_speakers)]
    mics = [await phone(f"mic{i + 1}-{tag}") for i in range(n_mics)]
    lobby = await admin.request("lobby.create")
    for device in (*speakers, *mics):
        await device.request("lobby.join", {"code": lobby["code"]})
    http = httpx.AsyncClient(base_url=suite.config.url("gateway"), timeout=60.0)
    created = await http.post("/v1/jobs", json={"map": {}, "meta": {"test": "measurement_protocol"}})
    assert created.status_code in (200, 201), created.text
    return Room(admin, speakers, mics, lobby["lobby_id"], created.json()["job_id"], http)


async def run_speaker(phone: Phone, slot_id: str, http: httpx.AsyncClient) -> None:
    """An honest speaker: ready, fetches and checks the audio, 'plays' it at once."""
    while True:
        event, data = await phone.pushes.get()
        session = {"session_id": data.get("session_id")}
        match event:
            case "measurement.start_measurement" if data["speaker_slot_id"] == slot_id:
                await phone.request("measurement.ready", session)
            case "measurement.request_audio":
                audio = await http.get(data["audio_url"])
                assert audio.status_code == 200, audio.text[:300]
                digest = hashlib.sha256(audio.content).hexdigest()
                await phone.request("measurement.speaker_audio_ready", {**session, "audio_hash": digest})
            case "measurement.start_playback":
                await phone.request("measurement.playback_complete", session)
            case _ if event in END_EVENTS:
                return


async def run_microphone(
    phone: Phone,
    http: httpx.AsyncClient,
    recordings: dict[str, bytes],
    *,
    silent_from: str | None = None,
    drops_at: str | None = None,
) -> None:
    """An honest microphone; or one that stops answering at ``silent_from`` (a command name); or one whose
    socket drops when ``drops_at`` first arrives and that reconnects half a second later."""
    while True:
        event, data = await phone.pushes.get()
        if event == silent_from:
            return
        if event == drops_at:
            drops_at = None
            await phone.close()
            await asyncio.sleep(0.5)
            await phone.connect()
            continue
        session = {"session_id": data.get("session_id")}
        match event:
            case "measurement.start_measurement":
                await phone.request("measurement.ready", session)
            case "measurement.start_recording":
                await phone.request("measurement.recording_started", session)
            case "measurement.stop_recording":
                body = recordings[data["speaker_slot_id"]]
                uploaded = await http.post(data["upload_url"], content=body, headers={"Content-Type": "audio/wav"})
                assert uploaded.status_code == 200, uploaded.text[:300]
                await phone.request("measurement.recording_uploaded", {**session, "upload_name": data["upload_name"]})
            case _ if event in END_EVENTS:
                return


async def fetch_signal(http: httpx.AsyncClient, audio_url: str) -> np.ndarray:
    response = await http.get(audio_url)
    assert response.status_code == 200
    signal, sample_rate_hz = soundfile.read(io.BytesIO(response.content), dtype="float64")
    assert sample_rate_hz == SAMPLE_RATE_HZ
    return signal if signal.ndim == 1 else signal[:, 0]


async def test_two_speakers_three_microphones_end_to_end(
    suite: Suite, phones: Callable[[str], Awaitable[Phone]]
) -> None:
    room = await make_room(suite, phones, n_speakers=2, n_mics=3)
    session = await room.admin.request("measurement.create_session", room.line_up())
    assert session["state"] == "idle"
    assert session["current_speaker"] == {"device_id": room.speakers[0].device_id, "slot_id": "speaker_1"}
    assert [m["slot_id"] for m in session["microphones"]] == ["mic_1", "mic_2", "mic_3"]
    lobby = await room.admin.request("lobby.get", {"lobby_id": room.lobby_id})
    assert lobby["state"] == "measurement_running"

    signal = await fetch_signal(room.http, session["audio_url"])
    recordings = {
        f"speaker_{i + 1}": await asyncio.to_thread(
            recording_wav, signal, room_impulse_response(ROOM_RT60_S, SAMPLE_RATE_HZ, seed=i), 0.05 + 0.02 * i, i
        )
        for i in range(2)
    }
    scripts = [asyncio.create_task(run_speaker(p, f"speaker_{i + 1}", room.http)) for i, p in enumerate(room.speakers)]
    scripts += [asyncio.create_task(run_microphone(p, room.http, recordings)) for p in room.mics]
    try:
        started = await room.admin.request("measurement.start_speaker", {"session_id": session["session_id"]})
        assert started["state"] == "awaiting_ready"
        complete = await room.admin.expect("measurement.session_complete", timeout_s=120)
        analysis = await room.admin.expect("measurement.analysis_complete", timeout_s=180)
        await asyncio.wait_for(asyncio.gather(*scripts), 10)
    finally:
        for script in scripts:
            script.cancel()
        await room.http.aclose()

    assert complete["job_id"] == room.job_id
    pairs = {(r["speaker_slot_id"], r["mic_slot_id"]): r for r in complete["recordings"]}
    assert set(pairs) == {(f"speaker_{s}", f"mic_{m}") for s in (1, 2) for m in (1, 2, 3)}
    assert pairs[("speaker_2", "mic_3")]["upload_name"] == "speaker_2__mic_3.wav"
    assert pairs[("speaker_2", "mic_3")]["device_id"] == room.mics[2].device_id
    for device in (*room.speakers, *room.mics):
        events = [name for name, _ in device.seen]
        assert events.count("measurement.speaker_complete") == 2
        assert "measurement.session_complete" in events
    assert [name for name, _ in room.mics[0].seen].count("measurement.stop_recording") == 2

    lobby = await room.admin.request("lobby.get", {"lobby_id": room.lobby_id})
    assert lobby["state"] == "open"

    assert analysis["job_id"] == room.job_id
    results = {(r["speaker_slot_id"], r["mic_slot_id"]): r for r in analysis["results"]}
    assert set(results) == set(pairs)
    for result in results.values():
        assert result["status"] == "ok", result.get("error")
        rt60_s = result["broadband"]["rt60_s"]
        assert rt60_s == pytest.approx(ROOM_RT60_S, rel=0.10), result["broadband"]

    status = await room.mics[1].request("measurement.session_status", {"session_id": session["session_id"]})
    assert status["state"] == "complete"
    assert len(status["recordings"]) == 6


async def test_silent_microphone_fails_the_step_and_is_named(
    suite: Suite, phones: Callable[[str], Awaitable[Phone]]
) -> None:
    room = await make_room(suite, phones, n_speakers=1, n_mics=3)
    session = await room.admin.request("measurement.create_session", room.line_up())
    ref = {"session_id": session["session_id"]}
    silent = room.mics[1]
    scripts = [asyncio.create_task(run_speaker(room.speakers[0], "speaker_1", room.http))]
    scripts += [
        asyncio.create_task(
            run_microphone(p, room.http, {}, silent_from="measurement.start_recording" if p is silent else None)
        )
        for p in room.mics
    ]
    try:
        await room.admin.request("measurement.start_speaker", ref)
        error = await room.admin.expect("measurement.error", timeout_s=60)
        await asyncio.wait_for(asyncio.gather(*scripts), 10)
    finally:
        for script in scripts:
            script.cancel()
        await room.http.aclose()

    assert error["code"] == "step_timeout"
    assert error["step"] == "awaiting_recording"
    assert error["missing_device_ids"] == [silent.device_id]
    for device in (room.speakers[0], *room.mics):
        assert ("measurement.error", error) in device.seen

    status = await room.admin.request("measurement.session_status", ref)
    assert status["state"] == "failed"
    assert status["last_error"]["device_ids"] == [silent.device_id]
    late = await silent.refused("measurement.recording_started", ref)  # the cycle has stopped
    assert late["code"] == "invalid_state"
    assert "failed" in late["message"]

    cancelled = await room.admin.request("measurement.cancel_session", {**ref, "reason": "mic fell off the table"})
    assert cancelled["state"] == "cancelled"
    assert (await room.admin.request("lobby.get", {"lobby_id": room.lobby_id}))["state"] == "open"


async def test_microphone_that_drops_and_comes_back_gets_the_command_again(
    suite: Suite, phones: Callable[[str], Awaitable[Phone]]
) -> None:
    room = await make_room(suite, phones, n_speakers=1, n_mics=2)
    session = await room.admin.request("measurement.create_session", room.line_up())
    signal = await fetch_signal(room.http, session["audio_url"])
    wav = await asyncio.to_thread(recording_wav, signal, room_impulse_response(0.4, SAMPLE_RATE_HZ, 7), 0.03, 7)
    flaky = room.mics[0]
    scripts = [asyncio.create_task(run_speaker(room.speakers[0], "speaker_1", room.http))]
    scripts += [
        asyncio.create_task(
            run_microphone(p, room.http, {"speaker_1": wav},
                           drops_at="measurement.start_recording" if p is flaky else None)
        )
        for p in room.mics
    ]  # fmt: skip
    try:
        await room.admin.request("measurement.start_speaker", {"session_id": session["session_id"]})
        complete = await room.admin.expect("measurement.session_complete", timeout_s=60)
        await asyncio.wait_for(asyncio.gather(*scripts), 10)
    finally:
        for script in scripts:
            script.cancel()
        await room.http.aclose()

    assert [name for name, _ in flaky.seen].count("measurement.start_recording") == 2
    assert "measurement.error" not in [name for name, _ in room.admin.seen]
    assert {r["device_id"] for r in complete["recordings"]} == {p.device_id for p in room.mics}
