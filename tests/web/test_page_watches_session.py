"""Part 1 of the web page: a browser admin runs a session of virtual phones and reads the results as pictures.

The page (served by the gateway at /) creates the lobby, assigns the roles, creates and starts the session
with the keyboard and mouse like a person; the virtual phones of `sonalyze_devices` join by the code the
page shows and play and record. The test waits for the results table of every (speaker, microphone) pair,
checks it holds numbers, that every plot has drawn data, that the CSV matches the table, that the page
asked nothing but the gateway, and saves a screenshot.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from playwright.async_api import expect

from sonalyze_devices.client import DeviceClient
from sonalyze_devices.phones import MicrophonePhone, SharedWorld, SpeakerPhone
from sonalyze_devices.room import default_layout
from sonalyze_devices.scenario import SimulatedRoom
from sonalyze_devices.synth import PhoneFlaws

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

SPEAKERS = ("speaker_1",)
MICS = ("mic_1", "mic_2")
PLOT_CLASSES = ("plot-decay", "plot-ir", "plot-ir-db", "plot-fr", "plot-compare")


async def test_page_runs_and_shows_a_virtual_phone_session(suite, browser, artifacts_dir, painted_pixels) -> None:
    gateway = suite.config.url("gateway")
    origin = urlparse(gateway).netloc
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway)
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda socket: requested.append(socket.url))
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))

    await page.goto(gateway + "/")
    await expect(page.locator("#connection")).to_have_text("connected")
    browser_device = await page.locator("#device-id").inner_text()
    await page.focus("#lobby-create")
    await page.keyboard.press("Enter")  # keyboard-usable: the admin's first step without a mouse
    await expect(page.locator("#lobby-code")).to_have_text(re.compile(r"^[2-9A-Z]{6}$"))
    code = await page.locator("#lobby-code").inner_text()
    await expect(page.locator("#lobby-admin-note")).to_have_text("you are the admin")

    layout = default_layout(len(SPEAKERS), len(MICS))
    pairs = [(s, m) for s in SPEAKERS for m in MICS]
    ws_url = gateway.replace("http://", "ws://") + "/ws"
    rng = np.random.default_rng(7)
    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        room = SimulatedRoom(http, layout, pairs)
        world = SharedWorld(http=http, impulse_responses=room.impulse_response, report=lambda *_: None)
        phones = [SpeakerPhone(DeviceClient(ws_url, f"web-{slot}"), slot, world) for slot in SPEAKERS] + [
            MicrophonePhone(
                DeviceClient(ws_url, f"web-{slot}"),
                slot,
                world,
                flaws=PhoneFlaws.random(rng, max_drift_ppm=80),
                rng=rng,
            )
            for slot in MICS
        ]
        try:
            for phone in phones:
                await phone.client.connect()
                lobby = await phone.client.request("lobby.join", {"code": code.lower()})
                phone.start()
            # a participant shares the room with the positions of the slots: the page compares with its simulation
            await phones[0].client.request(
                "lobby.room_snapshot", {"lobby_id": lobby["lobby_id"], "room": layout.snapshot()}
            )
            await expect(page.locator("#participants tbody tr")).to_have_count(1 + len(phones))
            await expect(page.locator("#room-note")).to_contain_text("3 positions")

            for phone in phones:
                row = page.locator(f'#participants tr[data-device="{phone.device_id}"]')
                await expect(row.locator(".pill")).to_have_text("connected")
                role = "speaker" if isinstance(phone, SpeakerPhone) else "microphone"
                await row.locator("select.role-select").select_option(role)
                await row.locator("input.slot-input").fill(phone.slot_id)
                await row.locator("button.assign").click()
                await expect(page.locator(f'#participants tr[data-device="{phone.device_id}"] td.slot')).to_have_text(
                    phone.slot_id
                )

            await page.click("#session-create")
            await expect(page.locator("#session-start")).to_be_enabled()
            await page.focus("#session-start")
            await page.keyboard.press("Enter")

            # the timeline follows the protocol live
            await expect(page.locator('#timeline li[data-event="measurement.speaker_complete"]')).to_have_count(
                1, timeout=120_000
            )
            await expect(page.locator('#timeline li[data-event="measurement.session_complete"]')).to_have_count(
                1, timeout=60_000
            )
            # phase by phase, with the coordinator's counters (measurement.phase_update)
            phases = page.locator('#timeline li[data-event="measurement.phase_update"]')
            assert await phases.count() >= 5
            await expect(phases.filter(has_text="recordings 2/2")).not_to_have_count(0)
            await expect(page.locator("#view-results")).to_be_visible(timeout=200_000)
            await expect(page.locator("#results section.pair")).to_have_count(len(pairs), timeout=60_000)
            await expect(page.locator("#results-status")).to_contain_text("compared with simulation", timeout=120_000)
        finally:
            await asyncio.gather(*(phone.stop() for phone in phones), return_exceptions=True)

    for speaker, mic in pairs:
        section = page.locator(f'#results section.pair[data-pair="{speaker}|{mic}"]')
        await expect(section).to_have_attribute("data-status", "ok")
        table = section.locator("table.results-table")
        for metric in ("t20_s", "t30_s", "c50_db", "c80_db", "d50", "drr_db"):
            for band in ("500", "1000", "2000"):
                text = await table.locator(f'td[data-metric="{metric}"][data-band="{band}"]').inner_text()
                float(text)  # a number, not a dash
        float(await table.locator('td[data-metric="sti"][data-band="broadband"]').inner_text())
        for null_cell in await table.locator("td.null").all():
            assert (await null_cell.get_attribute("title")).strip(), "a missing value without its reason"
        for plot_class in PLOT_CLASSES:
            figure = section.locator(f"figure.{plot_class}")
            await expect(figure).to_have_count(1)
            assert int(await figure.get_attribute("data-points")) > 10, plot_class
            assert await painted_pixels(figure) > 500, f"{plot_class} of {speaker}->{mic} drew nothing"

    await page.screenshot(path=str(artifacts_dir / "results.png"), full_page=True)

    # the decay plot follows the band chosen with the keyboard
    decay = page.locator("#results section.pair figure.plot-decay").first
    before = await decay.get_attribute("data-points")
    await decay.locator("select").select_option("125")
    await expect(decay).not_to_have_attribute("data-points", before)

    # the CSV on the clipboard is the table
    await page.locator("#results button.copy-csv").first.click()
    await expect(page.locator("#results p[role=status]")).to_contain_text("Copied")
    rows = list(csv.DictReader(io.StringIO(await page.evaluate("navigator.clipboard.readText()"))))
    assert len(rows) == len(pairs) * 8
    first = next(
        r for r in rows if (r["speaker_slot_id"], r["mic_slot_id"], r["metric"]) == ("speaker_1", "mic_1", "t30_s")
    )
    shown = await page.locator(
        '#results section.pair[data-pair="speaker_1|mic_1"] td[data-metric="t30_s"][data-band="1000"]'
    ).inner_text()
    assert float(first["1000_hz"]) == pytest.approx(float(shown), abs=0.006)

    foreign = [url for url in requested if urlparse(url).netloc != origin and not url.startswith(("data:", "blob:"))]
    assert not foreign, f"the page reached beyond the gateway: {foreign}"
    assert not problems, problems
    assert browser_device.startswith("browser-")
    await context.close()
