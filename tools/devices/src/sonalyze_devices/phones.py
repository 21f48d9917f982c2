"""Speakers and microphones that react only to the pushes they receive, as a phone would.

Each phone's behaviour is a table ``push event -> coroutine``; unknown pushes are ignored.
Faults (a microphone that goes silent, a slow upload, a dropped connection) are switches on the
phone, so the demo and the end-to-end tests can show what the suite does about them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import numpy as np
import soundfile as sf

from sonalyze_devices.app_contract import HardCastError
from sonalyze_devices.client import DeviceClient, ErrorReply, Push
from sonalyze_devices.synth import PhoneFlaws, synthesize_recording
from sonalyze_protocol import measurement_events as events
from sonalyze_protocol.measurement_events import RequestAudio

logger = logging.getLogger("sonalyze.devices")

Reporter = Callable[[str, str], None]


@dataclass
class Faults:
    """Misbehaviour switches of one microphone."""

    silent_once_on_speaker: str | None = None  # ignore start_recording for this speaker slot, once
    upload_delay_s: float = 0.0
    reconnect_after_recording_started: bool = False
    _silenced: bool = False


@dataclass
class SharedWorld:
    """What every virtual phone may look up: the gateway's HTTP side and the room's responses."""

    http: httpx.AsyncClient
    impulse_responses: Callable[[str, str], Awaitable[tuple[np.ndarray, int]]]
    report: Reporter
    signal_cache: dict[str, tuple[np.ndarray, int, bytes]] = field(default_factory=dict)
    # a slot id as the session names it -> the room layout's name for the same position
    slot_aliases: dict[str, str] = field(default_factory=dict)
    # every phone waits this long before each answer it sends (so a test can act while a step waits)
    answer_delay_s: float = 0.0

    async def fetch_signal(self, audio_url: str) -> tuple[np.ndarray, int, bytes]:
        """Download (once) the sweep the speakers play, through the gateway's HTTP proxy."""
        if audio_url not in self.signal_cache:
            response = await self.http.get(audio_url)
            response.raise_for_status()
            samples, rate_hz = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=False)
            self.signal_cache[audio_url] = (samples, int(rate_hz), response.content)
        return self.signal_cache[audio_url]


async def record_wav(
    world: SharedWorld, played_url: str, speaker_slot: str, mic_slot: str, flaws: PhoneFlaws, rng: np.random.Generator
) -> bytes:
    """What a microphone at ``mic_slot`` records while ``speaker_slot`` plays ``played_url``, as a 24-bit WAV."""
    played, played_rate_hz, _ = await world.fetch_signal(played_url)
    ir, ir_rate_hz = await world.impulse_responses(speaker_slot, mic_slot)
    recording = await asyncio.to_thread(synthesize_recording, played, played_rate_hz, ir, ir_rate_hz, flaws, rng)
    buffer = io.BytesIO()
    sf.write(buffer, recording, flaws.recording_rate_hz, format="WAV", subtype="PCM_24")
    return buffer.getvalue()


class Phone:
    """A device with a role: a push loop dispatching to the handlers of its class."""

    handlers: dict[str, str] = {}

    def __init__(self, client: DeviceClient, slot_id: str, world: SharedWorld) -> None:
        self.client = client
        self.slot_id = slot_id
        self.world = world
        self.task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    @property
    def device_id(self) -> str:
        return self.client.device_id

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"phone-{self.device_id}")

    async def _loop(self) -> None:
        while True:
            push = await self.client.pushes.get()
            name = self.handlers.get(push.event)
            if name is None:
                continue
            try:
                await getattr(self, name)(push)
            except (ErrorReply, HardCastError, httpx.HTTPError, ConnectionError, TimeoutError) as exc:
                self.errors.append(f"{push.event}: {exc}")
                self.world.report(self.slot_id, f"error while handling {push.event}: {exc}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()

    async def send(self, event: str, data: dict[str, Any]) -> Any:
        if self.world.answer_delay_s:
            await asyncio.sleep(self.world.answer_delay_s)
        return await self.client.request(event, data)


class SpeakerPhone(Phone):
    handlers = {
        events.START_MEASUREMENT: "on_start_measurement",
        events.REQUEST_AUDIO: "on_request_audio",
        events.START_PLAYBACK: "on_start_playback",
    }

    def __init__(self, client: DeviceClient, slot_id: str, world: SharedWorld, *, playback_s: float = 0.5) -> None:
        super().__init__(client, slot_id, world)
        self.playback_s = playback_s
        self.signal_duration_s = 0.0

    async def on_start_measurement(self, push: Push) -> None:
        if push.data.get("speaker_slot_id") not in (None, self.slot_id):
            return
        await self.send(events.READY, {"session_id": push.data["session_id"]})

    async def on_request_audio(self, push: Push) -> None:
        request = cast(RequestAudio, push.data)
        samples, rate_hz, raw = await self.world.fetch_signal(request["audio_url"])
        self.signal_duration_s = samples.size / rate_hz
        self.world.report(self.slot_id, f"downloaded the signal ({self.signal_duration_s:.1f} s)")
        audio_hash = hashlib.sha256(raw).hexdigest()
        await self.send(events.SPEAKER_AUDIO_READY, {"session_id": request["session_id"], "audio_hash": audio_hash})

    async def on_start_playback(self, push: Push) -> None:
        self.world.report(self.slot_id, "playing the sweep")
        await asyncio.sleep(self.playback_s)
        await self.send(events.PLAYBACK_COMPLETE, {"session_id": push.data["session_id"]})


class MicrophonePhone(Phone):
    handlers = {
        events.START_MEASUREMENT: "on_start_measurement",
        events.START_RECORDING: "on_start_recording",
        events.STOP_RECORDING: "on_stop_recording",
    }

    def __init__(
        self,
        client: DeviceClient,
        slot_id: str,
        world: SharedWorld,
        *,
        flaws: PhoneFlaws,
        rng: np.random.Generator,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(client, slot_id, world)
        self.flaws = flaws
        self.rng = rng
        self.faults = faults or Faults()
        self.current: dict[str, Any] = {}

    async def on_start_measurement(self, push: Push) -> None:
        self.current = dict(push.data)
        await self.send(events.READY, {"session_id": push.data["session_id"]})

    async def on_start_recording(self, push: Push) -> None:
        self.current.update(push.data)
        speaker = push.data.get("speaker_slot_id")
        if self.faults.silent_once_on_speaker == speaker and not self.faults._silenced:
            self.faults._silenced = True
            self.world.report(self.slot_id, f"goes silent (fault) while {speaker} waits")
            return
        await self.send(events.RECORDING_STARTED, {"session_id": push.data["session_id"]})
        if self.faults.reconnect_after_recording_started:
            self.faults.reconnect_after_recording_started = False
            self.world.report(self.slot_id, "drops its connection (fault) and comes back")
            await self.client.disconnect()
            await asyncio.sleep(1.0)
            await self.client.connect()

    async def on_stop_recording(self, push: Push) -> None:
        data = {**self.current, **push.data}
        speaker = data["speaker_slot_id"]
        audio_url = data.get("audio_url") or "/v1/measurement/audio?sample_rate=48000"
        wav = await record_wav(self.world, audio_url, speaker, self.slot_id, self.flaws, self.rng)
        if self.faults.upload_delay_s:
            self.world.report(self.slot_id, f"slow upload: waits {self.faults.upload_delay_s:.0f} s")
            await asyncio.sleep(self.faults.upload_delay_s)
        upload_name = data["upload_name"]
        response = await self.world.http.post(
            f"/v1/jobs/{data['job_id']}/uploads/{upload_name}",
            content=wav,
            headers={"Content-Type": "audio/wav", "X-Device-Id": self.device_id},
        )
        if response.status_code >= 400:
            raise ErrorReply("upload", str(response.status_code), response.text[:200], {})
        self.world.report(self.slot_id, f"uploaded {upload_name} ({len(wav) // 1024} KiB)")
        await self.send(events.RECORDING_UPLOADED, {"session_id": data["session_id"], "upload_name": upload_name})
