"""One whole measurement with virtual phones: lobby, roles, snapshot, job, session, results.

The admin drives the session the way the app's admin screen would; speakers and microphones only
react to pushes (`phones.py`). The result pairs every (speaker slot, microphone slot) measurement with
the simulation's prediction for the same room and positions.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from sonalyze_devices.client import DeviceClient, ErrorReply, Push
from sonalyze_devices.display import PairRow, Progress
from sonalyze_devices.phones import Faults, MicrophonePhone, SharedWorld, SpeakerPhone
from sonalyze_devices.room import RoomLayout, default_layout
from sonalyze_devices.synth import PhoneFlaws
from sonalyze_protocol import measurement_events as events

SIMULATION_RATE_HZ = 48000


@dataclass
class DemoOptions:
    gateway_url: str = "http://127.0.0.1:8000"
    n_speakers: int = 2
    n_microphones: int = 3
    seed: int = 1
    max_drift_ppm: float = 100.0
    drop_mic: bool = False
    slow_upload_s: float = 0.0
    disconnect_reconnect: bool = False
    session_timeout_s: float = 300.0
    max_speaker_retries: int = 2
    layout: RoomLayout | None = None
    # called with every push the admin receives, before the admin reacts (tests inject faults here)
    admin_hook: Callable[[Push], Awaitable[None]] | None = None
    # when given, every request's round trip through the gateway is appended here (load benchmark)
    latencies_s: list[float] | None = None
    # more gateways of one backplane: the phones' sockets are spread over all of them, round robin from
    # the admin on gateway_url (HTTP stays on gateway_url); with reconnect, a phone whose socket is
    # closed or lost opens it again at the next gateway
    more_gateway_urls: list[str] = field(default_factory=list)
    reconnect: bool = False
    # each phone waits this long before every answer (a step then lasts at least this long)
    answer_delay_s: float = 0.0

    @property
    def ws_url(self) -> str:
        return _ws(self.gateway_url)

    @property
    def ws_urls(self) -> list[str]:
        return [_ws(url) for url in (self.gateway_url, *self.more_gateway_urls)]

    def client(self, index: int, device_id: str) -> DeviceClient:
        """The socket of the ``index``-th device (the admin is 0) on its gateway, the others as fallbacks."""
        urls = self.ws_urls
        mine = index % len(urls)
        return DeviceClient(
            urls[mine],
            device_id,
            latencies_s=self.latencies_s,
            fallback_urls=urls[mine + 1 :] + urls[:mine],
            reconnect=self.reconnect,
        )


def _ws(url: str) -> str:
    return url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/ws"


@dataclass
class DemoResult:
    lobby_code: str = ""
    lobby_id: str = ""
    job_id: str = ""
    session_id: str = ""
    session_complete: bool = False
    analysis: dict[str, Any] | None = None
    rows: list[PairRow] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    measured: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    simulated: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    phone_errors: dict[str, list[str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)  # slot id -> device id
    simulation_id: str = ""
    # the app dialect: answer time of create_session, results each phone holds, refused hard casts
    create_session_s: float | None = None
    results_by_phone: dict[str, int] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        expected = len(self.rows)
        analysed = sum(
            1 for r in self.rows if r.measured.get("status", "ok") == "ok" and r.measured.get("rt60_s") is not None
        )
        complete = self.session_complete and self.analysis is not None and expected > 0 and analysed == expected
        every_phone_has_results = all(n > 0 for slot, n in self.results_by_phone.items() if slot != "host")
        return complete and not self.violations and every_phone_has_results


class SimulatedRoom:
    """Impulse responses and predictions of the room, asked from the simulation service via the gateway.

    One simulation covers every (speaker, microphone) pair of the layout; it runs once, when the first
    microphone needs its response, and every phone reads from it.
    """

    def __init__(self, http: httpx.AsyncClient, layout: RoomLayout, pairs: list[tuple[str, str]]) -> None:
        self.http = http
        self.layout = layout
        self.pairs = pairs
        self._answer: dict[str, Any] | None = None
        self._by_pair: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    async def _simulation(self) -> dict[str, Any]:
        async with self._lock:
            if self._answer is None:
                body = self.layout.simulation_request(self.pairs, sample_rate_hz=SIMULATION_RATE_HZ)
                response = await self.http.post("/v1/simulation/simulate", json=body, timeout=180)
                if response.status_code != 200:
                    raise ErrorReply("simulation", str(response.status_code), response.text[:300], {})
                self._answer = response.json()
                self._by_pair = {(r["source_id"], r["microphone_id"]): r for r in self._answer["results"]}
            return self._answer

    @property
    def simulation_id(self) -> str:
        return self._answer["simulation_id"] if self._answer else ""

    async def pair(self, speaker: str, mic: str) -> dict[str, Any]:
        await self._simulation()
        return self._by_pair[(speaker, mic)]

    async def impulse_response(self, speaker: str, mic: str) -> tuple[np.ndarray, int]:
        answer = await self._simulation()
        response = await self.http.get(
            f"/v1/simulation/simulate/{answer['simulation_id']}/ir",
            params={"source_id": speaker, "microphone_id": mic, "format": "float32"},
        )
        if response.status_code != 200:
            raise ErrorReply("simulation.ir", str(response.status_code), response.text[:300], {})
        samples, rate_hz = sf.read(io.BytesIO(response.content), dtype="float64", always_2d=False)
        return samples, int(rate_hz)

    async def prediction(self, speaker: str, mic: str) -> dict[str, Any]:
        return dict((await self.pair(speaker, mic))["broadband"])


def _measured_by_pair(analysis: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The analysis result of each (speaker slot, microphone slot), as the measurement service gave it."""
    results = analysis.get("results") or {}
    if isinstance(results, dict):  # {job_id, results: [...], summary}
        results = results.get("results") or []
    return {(item.get("speaker_slot_id"), item.get("mic_slot_id")): item for item in results}


async def run_demo(options: DemoOptions, progress: Progress) -> DemoResult:
    """Run one session end to end; never raises for protocol failures (they land in ``result.errors``)."""
    result = DemoResult()
    layout = options.layout or default_layout(options.n_speakers, options.n_microphones)
    rng = np.random.default_rng(options.seed)
    run_tag = uuid.uuid4().hex[:6]
    speaker_slots = [f"speaker_{i + 1}" for i in range(options.n_speakers)]
    mic_slots = [f"mic_{j + 1}" for j in range(options.n_microphones)]

    async with httpx.AsyncClient(base_url=options.gateway_url, timeout=60) as http:
        room = SimulatedRoom(http, layout, [(s, m) for s in speaker_slots for m in mic_slots])
        world = SharedWorld(
            http=http,
            impulse_responses=room.impulse_response,
            report=progress.report,
            answer_delay_s=options.answer_delay_s,
        )
        admin = options.client(0, f"admin-{run_tag}")
        speakers = [
            SpeakerPhone(options.client(1 + i, f"{slot}-{run_tag}"), slot, world)
            for i, slot in enumerate(speaker_slots)
        ]
        mics = []
        for j, slot in enumerate(mic_slots):
            faults = Faults()
            if options.drop_mic and j == len(mic_slots) - 1:
                faults.silent_once_on_speaker = speaker_slots[-1]
            if options.slow_upload_s and j == 0:
                faults.upload_delay_s = options.slow_upload_s
            if options.disconnect_reconnect and j == 1 % len(mic_slots):
                faults.reconnect_after_recording_started = True
            flaws = PhoneFlaws.random(rng, max_drift_ppm=options.max_drift_ppm)
            client = options.client(1 + len(speaker_slots) + j, f"{slot}-{run_tag}")
            mics.append(MicrophonePhone(client, slot, world, flaws=flaws, rng=rng, faults=faults))
        phones = [*speakers, *mics]
        result.devices = {"admin": admin.device_id, **{p.slot_id: p.device_id for p in phones}}
        result.clients = {"admin": admin, **{p.slot_id: p.client for p in phones}}
        try:
            await admin.connect()
            await asyncio.gather(*(p.client.connect() for p in phones))
            lobby = await admin.request("lobby.create", {})
            result.lobby_code = lobby["code"]
            lobby_id = result.lobby_id = lobby["lobby_id"]
            progress.report("admin", f"created lobby {lobby['code']}")
            for phone in phones:
                await phone.client.request("lobby.join", {"code": lobby["code"].lower()})
                phone.start()
            progress.report("lobby", f"{len(phones)} phones joined")
            for phone in phones:
                role = "speaker" if isinstance(phone, SpeakerPhone) else "microphone"
                await admin.request(
                    "role.assign",
                    {
                        "lobby_id": lobby_id,
                        "target_device_id": phone.device_id,
                        "role": role,
                        "role_slot_id": phone.slot_id,
                    },
                )
            progress.report("admin", "assigned roles " + ", ".join(p.slot_id for p in phones))
            await admin.request("lobby.room_snapshot", {"lobby_id": lobby_id, "room": layout.snapshot()})
            job = await admin.request(
                "measurement.create_job",
                {"map": {"room": layout.snapshot()}, "meta": {"lobby_id": lobby_id, "demo": True}},
            )
            result.job_id = job["job_id"]
            session = await admin.request(
                events.CREATE_SESSION,
                {
                    "job_id": result.job_id,
                    "lobby_id": lobby_id,
                    "speakers": [{"device_id": p.device_id, "slot_id": p.slot_id} for p in speakers],
                    "microphones": [{"device_id": p.device_id, "slot_id": p.slot_id} for p in mics],
                },
            )
            result.session_id = session["session_id"]
            progress.report("admin", f"session {result.session_id[:8]} for job {result.job_id[:8]}: starting")
            await admin.request(events.START_SPEAKER, {"session_id": result.session_id})
            await _follow_session(admin, options, progress, result)
            result.measured = _measured_by_pair(result.analysis or {})
            for s in speaker_slots:
                for m in mic_slots:
                    try:
                        result.simulated[(s, m)] = await room.pair(s, m)
                    except (ErrorReply, httpx.HTTPError, KeyError) as exc:
                        result.errors.append({"code": "simulation_failed", "message": str(exc)})
                    item = result.measured.get((s, m), {"status": "missing"})
                    measured = {"status": item.get("status"), **(item.get("broadband") or {})}
                    simulated = dict(result.simulated.get((s, m), {}).get("broadband") or {})
                    result.rows.append(PairRow(s, m, measured, simulated))
            result.simulation_id = room.simulation_id
        except (ErrorReply, httpx.HTTPError, ConnectionError, TimeoutError, OSError) as exc:
            result.errors.append({"code": getattr(exc, "code", type(exc).__name__), "message": str(exc)})
            progress.report("demo", f"stopped: {exc}")
        finally:
            progress.done()
            result.phone_errors = {p.slot_id: p.errors for p in phones if p.errors}
            await asyncio.gather(*(p.stop() for p in phones), return_exceptions=True)
            await admin.close()
    return result


async def _follow_session(admin: DeviceClient, options: DemoOptions, progress: Progress, result: DemoResult) -> None:
    """Wait for the session's pushes; retry a failed speaker like an admin would."""
    retries = 0
    deadline = asyncio.get_running_loop().time() + options.session_timeout_s
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        push = await admin.next_push(timeout_s=max(remaining, 0.1))
        result.pushes.append(("admin", push.event, push.data))
        if options.admin_hook is not None:
            await options.admin_hook(push)
        if push.event == events.SPEAKER_COMPLETE:
            progress.report("session", f"{push.data.get('speaker_slot_id', 'speaker')} complete")
        elif push.event == events.SESSION_COMPLETE:
            result.session_complete = True
            progress.report("session", f"complete: {len(push.data.get('recordings', []))} recordings; analysing")
        elif push.event == events.ANALYSIS_COMPLETE:
            result.analysis = push.data
            progress.report("analysis", "complete")
            return
        elif push.event == "measurement.error":
            result.errors.append(push.data)
            missing = push.data.get("missing_device_ids")
            progress.report(
                "session", f"error {push.data.get('code')}: {push.data.get('message', '')} {missing or ''}".rstrip()
            )
            if result.session_complete:
                return  # the analysis failed
            if retries >= options.max_speaker_retries:
                return
            retries += 1
            await asyncio.sleep(0.5)
            progress.report("admin", f"retrying the speaker (attempt {retries + 1})")
            await admin.request(events.START_SPEAKER, {"session_id": result.session_id})
        elif push.event == events.SESSION_CANCELLED:
            result.errors.append(push.data)
            return
        elif push.event.startswith("measurement."):
            progress.status(f"{push.event.removeprefix('measurement.')}")
