"""Part 2 of the web page: a browser takes the microphone or the speaker role beside virtual phones.

Microphone: Chromium's fake capture device plays a WAV file into getUserMedia: the room's response to the
session's signal, made by the virtual phones' own synthesis (the simulated impulse response from the speaker
to the browser's position, a start delay, background noise and a clock 60 ppm off). The browser answers every
step itself (ready, recording_started, the upload of its own recording as a float WAV at its audio context's
rate, recording_uploaded); the session must complete with that recording analysed like the virtual phone's.

Speaker: the browser downloads the signal, checks it against `expected_hash`, plays it with Web Audio in real
time and reports playback_complete; the virtual microphones record the room as usual.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from playwright.async_api import expect

from sonalyze_devices.client import DeviceClient
from sonalyze_devices.phones import MicrophonePhone, SharedWorld, SpeakerPhone
from sonalyze_devices.room import RoomLayout, default_layout
from sonalyze_devices.scenario import SimulatedRoom
from sonalyze_devices.synth import PhoneFlaws, synthesize_recording

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

SIGNAL_URL = "/v1/measurement/audio?sample_rate=48000"
MEDIA_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


async def _fake_capture_wav(http: httpx.AsyncClient, room: SimulatedRoom, path, rng) -> None:
    """What the browser's microphone hears: the signal through the room to mic_2, as the virtual phones make it."""
    response = await http.get(SIGNAL_URL)
    response.raise_for_status()
    played, rate_hz = sf.read(io.BytesIO(response.content), dtype="float64")
    ir, ir_rate_hz = await room.impulse_response("speaker_1", "mic_2")
    flaws = PhoneFlaws(start_delay_s=0.1, peak_to_noise_db=55.0, drift_ppm=60.0, recording_rate_hz=48000)
    heard = synthesize_recording(played, int(rate_hz), ir, ir_rate_hz, flaws, rng)
    sf.write(str(path), np.concatenate([heard, np.zeros(48000, np.float32)]), 48000, subtype="PCM_16")


async def _phone_page(browser, gateway: str, code: str, problems: list[str]) -> tuple[Any, str]:
    """The page joined to the lobby by code, with its phone mode on; returns the page and its device id."""
    page = await browser.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(gateway + "/")
    await expect(page.locator("#connection")).to_have_text("connected")
    await page.fill("#lobby-join-code", code.lower())
    await page.press("#lobby-join-code", "Enter")
    await expect(page.locator("#lobby-code")).to_have_text(code)
    await page.click("#phone-enable")
    await expect(page.locator("#phone-log")).to_contain_text("phone ready")
    await expect(page.locator("#phone-log")).to_contain_text(
        "echo cancellation off, noise suppression off, auto gain off"
    )
    return page, await page.locator("#device-id").inner_text()


async def _run_session(
    admin: DeviceClient, lobby_id: str, layout: RoomLayout, speakers, mics, page
) -> tuple[str, dict]:
    """The admin's part: roles, room, job, session, start; returns the job id and the analysis push."""
    for device_id, slot in speakers:
        await admin.request(
            "role.assign",
            {"lobby_id": lobby_id, "target_device_id": device_id, "role": "speaker", "role_slot_id": slot},
        )
    for device_id, slot in mics:
        await admin.request(
            "role.assign",
            {"lobby_id": lobby_id, "target_device_id": device_id, "role": "microphone", "role_slot_id": slot},
        )
    await admin.request("lobby.room_snapshot", {"lobby_id": lobby_id, "room": layout.snapshot()})
    job = await admin.request(
        "measurement.create_job", {"map": {"room": layout.snapshot()}, "meta": {"test": "browser phone"}}
    )
    session = await admin.request(
        "measurement.create_session",
        {
            "job_id": job["job_id"],
            "lobby_id": lobby_id,
            "speakers": [{"device_id": d, "slot_id": s} for d, s in speakers],
            "microphones": [{"device_id": d, "slot_id": s} for d, s in mics],
        },
    )
    await admin.request("measurement.start_speaker", {"session_id": session["session_id"]})
    while True:
        push = await admin.next_push(timeout_s=240)
        assert push.event not in ("measurement.error", "measurement.session_cancelled"), (
            push,
            await page.locator("#phone-log").inner_text(),
        )
        if push.event == "measurement.analysis_complete":
            return job["job_id"], push.data


def _by_mic(analysis: dict) -> dict[str, dict]:
    results = analysis["results"]
    items = results["results"] if isinstance(results, dict) else results
    return {item["mic_slot_id"]: item for item in items}


async def test_browser_records_as_a_microphone(suite, launch_chromium, tmp_path, artifacts_dir) -> None:
    gateway = suite.config.url("gateway")
    ws_url = gateway.replace("http://", "ws://") + "/ws"
    layout = default_layout(1, 2)
    rng = np.random.default_rng(11)
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        room = SimulatedRoom(http, layout, [("speaker_1", "mic_1"), ("speaker_1", "mic_2")])
        wav_path = tmp_path / "browser-mic.wav"
        await _fake_capture_wav(http, room, wav_path, rng)
        browser = await launch_chromium([*MEDIA_FLAGS, f"--use-file-for-fake-audio-capture={wav_path}"])
        world = SharedWorld(http=http, impulse_responses=room.impulse_response, report=lambda *_: None)
        admin = DeviceClient(ws_url, "web2-admin")
        speaker = SpeakerPhone(DeviceClient(ws_url, "web2-speaker_1"), "speaker_1", world)
        mic = MicrophonePhone(DeviceClient(ws_url, "web2-mic_1"), "mic_1", world, flaws=PhoneFlaws.random(rng), rng=rng)
        try:
            await admin.connect()
            lobby = await admin.request("lobby.create", {})
            for phone in (speaker, mic):
                await phone.client.connect()
                await phone.client.request("lobby.join", {"code": lobby["code"]})
                phone.start()
            page, browser_device = await _phone_page(browser, gateway, lobby["code"], problems)
            job_id, analysis = await _run_session(
                admin,
                lobby["lobby_id"],
                layout,
                [(speaker.device_id, "speaker_1")],
                [(mic.device_id, "mic_1"), (browser_device, "mic_2")],
                page,
            )
            log = await page.locator("#phone-log").inner_text()
            await page.screenshot(path=str(artifacts_dir / "browser-phone.png"), full_page=True)
        finally:
            await asyncio.gather(speaker.stop(), mic.stop(), admin.close(), return_exceptions=True)

        by_mic = _by_mic(analysis)
        mine = by_mic["mic_2"]
        # the push leaves the plot data out; the job keeps it for the page
        assert all("plots" not in item for item in by_mic.values())
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        assert all(item["plots"]["decay_curves"]["1000"]["fits"] for item in job["analysis"]["results"])
        assert mine["status"] == "ok", (mine["error"], log)
        assert "uploaded speaker_1__mic_2.wav" in log
        upload = (await http.get(f"/v1/jobs/{job_id}/uploads/speaker_1__mic_2.wav")).json()
        assert upload["subtype"] == "FLOAT" and upload["duration_s"] >= 10.0  # the browser's own WAV, whole signal
        # the browser's clock: the capture file's 60 ppm drift, measured through the browser's resampling
        assert mine["quality"]["drift_ppm"] == pytest.approx(60.0, abs=25.0)
        # the browser's recording tells the same room as the virtual phone's and as the simulation
        predicted = (await room.pair("speaker_1", "mic_2"))["bands"]
        for band in ("500", "1000", "2000"):
            assert mine["bands"][band]["t30_s"] == pytest.approx(predicted[band]["t30_s"], rel=0.15), band
            assert mine["bands"][band]["t30_s"] == pytest.approx(by_mic["mic_1"]["bands"][band]["t30_s"], rel=0.2), band
    assert not problems, problems


async def test_browser_plays_as_the_speaker(suite, launch_chromium) -> None:
    gateway = suite.config.url("gateway")
    ws_url = gateway.replace("http://", "ws://") + "/ws"
    layout = default_layout(1, 2)
    rng = np.random.default_rng(12)
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        room = SimulatedRoom(http, layout, [("speaker_1", "mic_1"), ("speaker_1", "mic_2")])
        browser = await launch_chromium(MEDIA_FLAGS)
        world = SharedWorld(http=http, impulse_responses=room.impulse_response, report=lambda *_: None)
        admin = DeviceClient(ws_url, "web3-admin")
        mics = [
            MicrophonePhone(DeviceClient(ws_url, f"web3-{slot}"), slot, world, flaws=PhoneFlaws.random(rng), rng=rng)
            for slot in ("mic_1", "mic_2")
        ]
        try:
            await admin.connect()
            lobby = await admin.request("lobby.create", {})
            for phone in mics:
                await phone.client.connect()
                await phone.client.request("lobby.join", {"code": lobby["code"]})
                phone.start()
            page, browser_device = await _phone_page(browser, gateway, lobby["code"], problems)
            loop = asyncio.get_running_loop()
            started = loop.time()
            _, analysis = await _run_session(
                admin,
                lobby["lobby_id"],
                layout,
                [(browser_device, "speaker_1")],
                [(m.device_id, m.slot_id) for m in mics],
                page,
            )
            elapsed_s = loop.time() - started
            log = await page.locator("#phone-log").inner_text()
        finally:
            await asyncio.gather(*(m.stop() for m in mics), admin.close(), return_exceptions=True)

    for line in ("ready as speaker", "signal downloaded", "playing the sweep", "playback complete"):
        assert line in log, log
    assert elapsed_s > 9.0  # the sweep was played in real time (the signal lasts 10 s), not skipped
    assert all(item["status"] == "ok" for item in _by_mic(analysis).values()), analysis
    assert not problems, problems
