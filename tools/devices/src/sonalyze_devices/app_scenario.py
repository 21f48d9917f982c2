"""One whole measurement in the app's dialect (``--dialect app``): spec phone-app.md section 7.

Host: ``lobby.create`` -> others ``lobby.join`` + ``lobby.get`` -> ``role.assign`` (slots ``speaker-1``,
``microphone-1`` with labels), ``lobby.room_snapshot`` with the app's room model, ``lobby.step_update`` /
``lobby.profile_update`` -> ``measurement.create_job`` (``map`` = the room model) -> ``create_session``
-> ``start_speaker`` on a fixed 500 ms timer from sending ``create_session`` (a slower answer makes
the real app skip the start, so it fails the run here) -> the phones react to pushes -> on
``session_complete`` the host runs ``analysis.run`` per recording and relays each result with
``measurement.broadcast_results``; every phone must end up with results.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Final

import httpx
import numpy as np

from sonalyze_devices.app_contract import HardCastError, hard
from sonalyze_devices.app_phones import AppMicrophonePhone, AppPhone, AppSpeakerPhone, app_client, app_upload_name
from sonalyze_devices.client import DeviceClient, ErrorReply
from sonalyze_devices.display import PairRow, Progress
from sonalyze_devices.phones import SharedWorld
from sonalyze_devices.room import default_layout
from sonalyze_devices.scenario import DemoOptions, DemoResult, SimulatedRoom
from sonalyze_devices.synth import PhoneFlaws
from sonalyze_protocol import measurement_events as events

START_TIMER_S: Final = 0.5  # the app sends start_speaker this long after sending create_session
RESULTS_WAIT_S: Final = 30.0
SWEEP_PROFILE: Final = "smartphone"


def app_measured(results: dict[str, Any]) -> dict[str, Any]:
    """The table's metrics out of the app-shaped ``results`` (spec section 6)."""

    def pick(group: str, key: str) -> Any:
        value = (results.get(group) or {}).get(key) if isinstance(results.get(group), dict) else None
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    return {
        "status": "ok",
        "rt60_s": pick("rt", "rt60_s"),
        "edt_s": pick("rt", "edt_s"),
        "c50_db": pick("clarity", "c50_db"),
        "c80_db": pick("clarity", "c80_db"),
        "drr_db": pick("drr", "drr_db"),
        "sti": pick("sti", "sti"),
    }


async def run_app_demo(options: DemoOptions, progress: Progress) -> DemoResult:
    """Run one session exactly as the app would; never raises for protocol failures (see ``result.errors``)."""
    result = DemoResult()
    layout = options.layout or default_layout(options.n_speakers, options.n_microphones)
    rng = np.random.default_rng(options.seed)
    tag = uuid.uuid4().hex[:6]
    speaker_slots = [f"speaker-{i + 1}" for i in range(options.n_speakers)]
    mic_slots = [f"microphone-{j + 1}" for j in range(options.n_microphones)]
    aliases = {**{f"speaker-{i + 1}": f"speaker_{i + 1}" for i in range(options.n_speakers)},
               **{f"microphone-{j + 1}": f"mic_{j + 1}" for j in range(options.n_microphones)}}  # fmt: skip
    room_model = layout.app_room_model({v: k for k, v in aliases.items()})

    async with httpx.AsyncClient(base_url=options.gateway_url, timeout=60) as http:
        pairs = [(aliases[s], aliases[m]) for s in speaker_slots for m in mic_slots]
        room = SimulatedRoom(http, layout, pairs)
        world = SharedWorld(http=http, impulse_responses=room.impulse_response, report=progress.report)
        world.slot_aliases = aliases
        host = app_client(options.ws_url, f"app-host-{tag}", latencies_s=options.latencies_s)
        speakers = [AppSpeakerPhone(app_client(options.ws_url, f"app-{s}-{tag}"), s, world) for s in speaker_slots]
        mics = [
            AppMicrophonePhone(
                app_client(options.ws_url, f"app-{m}-{tag}"), m, world, layout_slot=aliases[m],
                flaws=PhoneFlaws.random(rng, max_drift_ppm=options.max_drift_ppm), rng=rng,
            )
            for m in mic_slots
        ]  # fmt: skip
        phones: list[AppPhone] = [*speakers, *mics]
        result.devices = {"host": host.device_id, **{p.slot_id: p.device_id for p in phones}}
        host_results: list[dict[str, Any]] = []
        try:
            await host.connect()
            await asyncio.gather(*(p.client.connect() for p in phones))
            lobby = await host.request("lobby.create", {})
            code, lobby_id = hard(lobby, "code"), hard(lobby, "lobby_id")
            result.lobby_code, result.lobby_id = code, lobby_id
            progress.report("host", f"created lobby {code} (app dialect)")
            for phone in phones:
                phone.code = code
                await phone.send("lobby.join", {"code": code})
                await phone.send("lobby.get", {"code": code})
                phone.start()
            for phone in phones:
                role = "speaker" if isinstance(phone, AppSpeakerPhone) else "microphone"
                label = phone.slot_id.replace("-", " ").title()
                await host.request("role.assign", {"lobby_id": lobby_id, "target_device_id": phone.device_id, "role": role,
                                                   "role_slot_id": phone.slot_id, "role_slot_label": label})  # fmt: skip
            await host.request("lobby.room_snapshot", {"lobby_id": lobby_id, "room": room_model})
            await host.request("lobby.step_update", {"lobby_id": lobby_id, "step_index": 1})
            await host.request("lobby.profile_update", {"lobby_id": lobby_id, "profile_id": SWEEP_PROFILE})
            progress.report("host", "assigned " + ", ".join(p.slot_id for p in phones) + "; shared the room model")
            job = await host.request(
                "measurement.create_job", {"map": room_model, "meta": {"lobby_id": lobby_id, "lobby_code": code}}
            )
            result.job_id = hard(job, "job_id")
            line_up = {
                "job_id": result.job_id,
                "lobby_id": lobby_id,
                "speakers": [
                    {"device_id": p.device_id, "slot_id": p.slot_id, "slot_label": p.slot_id.title()} for p in speakers
                ],
                "microphones": [
                    {"device_id": p.device_id, "slot_id": p.slot_id, "slot_label": p.slot_id.title()} for p in mics
                ],
            }
            await _create_and_start(host, line_up, progress, result)
            await _follow_as_host(host, options, progress, result, speaker_slots, mics, host_results)
            await _wait_for_results(phones, len(speaker_slots) * len(mic_slots))
            for s in speaker_slots:
                for m in mics:
                    name = app_upload_name(m.device_id, s)
                    measured = result.measured.get((s, m.slot_id), {"status": "missing"})
                    try:
                        simulated = await room.pair(aliases[s], aliases[m.slot_id])
                        result.simulated[(s, m.slot_id)] = simulated
                    except (ErrorReply, httpx.HTTPError, KeyError) as exc:
                        result.errors.append({"code": "simulation_failed", "message": f"{name}: {exc}"})
                        simulated = {}
                    result.rows.append(PairRow(s, m.slot_id, measured, dict(simulated.get("broadband") or {})))
            result.simulation_id = room.simulation_id
        except (ErrorReply, HardCastError, httpx.HTTPError, ConnectionError, TimeoutError, OSError) as exc:
            result.errors.append({"code": getattr(exc, "code", type(exc).__name__), "message": str(exc)})
            progress.report("demo", f"stopped: {exc}")
        finally:
            progress.done()
            pushed_to_host = sum(1 for p in host.seen if p.event == events.ANALYSIS_RESULTS)
            result.results_by_phone = {
                "host": len(host_results) + pushed_to_host,
                **{p.slot_id: len(p.results) for p in phones},
            }
            result.phone_errors = {p.slot_id: p.errors for p in phones if p.errors}
            violations = {p.slot_id: p.client.violations for p in [*phones] if p.client.violations}
            if host.violations:
                violations["host"] = host.violations
            result.violations = violations
            result.clients = {"host": host, **{p.slot_id: p.client for p in phones}}
            await asyncio.gather(*(p.stop() for p in phones), return_exceptions=True)
            await host.close()
    return result


async def _create_and_start(
    host: DeviceClient, line_up: dict[str, Any], progress: Progress, result: DemoResult
) -> None:
    """``create_session`` then ``start_speaker`` 500 ms after sending it, as the app's timer does."""
    loop = asyncio.get_running_loop()
    sent_at = loop.time()

    async def create() -> tuple[Any, float]:
        reply = await host.request(events.CREATE_SESSION, line_up)
        return reply, loop.time() - sent_at

    created = asyncio.create_task(create())
    await asyncio.sleep(START_TIMER_S)
    if not created.done():
        await asyncio.gather(created, return_exceptions=True)
        result.create_session_s = loop.time() - sent_at
        raise TimeoutError(
            f"measurement.create_session answered after {result.create_session_s * 1000:.0f} ms: "
            f"the app's {START_TIMER_S * 1000:.0f} ms timer would have skipped start_speaker"
        )
    session, answered_s = created.result()
    result.create_session_s = answered_s
    result.session_id = hard(session, "session_id")
    progress.report("host", f"session {result.session_id[:8]} (answered in {answered_s * 1000:.0f} ms); start_speaker")
    await host.request(events.START_SPEAKER, {"session_id": result.session_id})


async def _follow_as_host(
    host: DeviceClient,
    options: DemoOptions,
    progress: Progress,
    result: DemoResult,
    speaker_slots: list[str],
    mics: list[AppMicrophonePhone],
    host_results: list[dict[str, Any]],
) -> None:
    """The host's pushes until ``session_complete``; then ``analysis.run`` and ``broadcast_results`` per recording."""
    deadline = asyncio.get_running_loop().time() + options.session_timeout_s
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        push = await host.next_push(timeout_s=max(remaining, 0.1))
        result.pushes.append(("host", push.event, push.data))
        if push.event == events.PHASE_UPDATE:
            progress.status(f"{push.data.get('phase')}: {push.data.get('phase_description', '')}")
        elif push.event == events.SPEAKER_COMPLETE:
            progress.report("session", f"{push.data.get('completed_speaker_slot_id')} complete, "
                                       f"{push.data.get('remaining_speakers')} to go")  # fmt: skip
        elif push.event in (events.ERROR, events.SESSION_CANCELLED):
            result.errors.append(push.data)  # the app ends its local session on any error
            progress.report("session", f"{push.event}: {push.data.get('error_message') or push.data.get('reason')}")
            return
        elif push.event == events.SESSION_COMPLETE:
            hard(push.data, "session_id")
            result.session_complete = True
            progress.report(
                "session", f"complete: {push.data.get('completed_speakers')}; the host analyses each recording"
            )
            break
    analysed: dict[str, Any] = {}
    for s in speaker_slots:
        for mic in mics:
            name = app_upload_name(mic.device_id, s)
            answer = await host.request(
                "analysis.run",
                {"job_id": result.job_id, "source": "sweep_deconvolution_generated", "recording_upload": name},
                timeout_s=120,
            )
            results = hard(answer, "results", dict)
            analysed[name] = results
            host_results.append(results)
            result.measured[(s, mic.slot_id)] = app_measured(results)
            await host.request(events.BROADCAST_RESULTS,
                               {"session_id": result.session_id, "job_id": result.job_id, "results": results})  # fmt: skip
    result.analysis = {"app_results": analysed}
    progress.report("host", f"analysed and relayed {len(analysed)} recordings")


async def _wait_for_results(phones: list[AppPhone], per_phone: int) -> None:
    """Until every phone holds ``per_phone`` results (the host's relays; the suite's own pushes count too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESULTS_WAIT_S
    # results arrive on the phones' own reader tasks; polling keeps them independent
    while loop.time() < deadline and any(len(p.results) < per_phone for p in phones):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
