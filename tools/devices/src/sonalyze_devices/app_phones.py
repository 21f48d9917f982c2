"""Virtual phones that speak exactly like the Sonalyze app (``--dialect app``, spec phone-app.md).

The app's names and fields: ``ready``/``recording_started`` carry ``device_id``; the speaker fetches
``/v1/measurement/audio?session_id=…`` and checks ``X-Audio-Hash``; a microphone uploads
``recording_<micDeviceId>_<speakerSlotId>.wav`` as multipart field ``file`` to ``upload_endpoint`` and
accepts exactly 200. Every answer and push is checked against `app_contract` on receipt; a field the
app hard-casts that is missing raises `HardCastError`, as the app would throw.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from typing import Any

import numpy as np
import soundfile as sf

from sonalyze_devices.app_contract import HardCastError, check_push, check_response, hard
from sonalyze_devices.client import DeviceClient, ErrorReply, Push
from sonalyze_devices.phones import Faults, Phone, SharedWorld, record_wav
from sonalyze_devices.synth import PhoneFlaws
from sonalyze_protocol import measurement_events as events

AUDIO_HASH_HEADER = "X-Audio-Hash"
SAMPLE_RATE_HZ = 48_000


class _MicrosecondIds:
    """The app's request ids: microseconds since the epoch, as a string (kept strictly increasing)."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> str:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return str(self._last)


def app_client(ws_url: str, device_id: str, **kwargs: Any) -> DeviceClient:
    """A `DeviceClient` with the app's request ids and its hard casts on every answer and push."""
    return DeviceClient(
        ws_url,
        device_id,
        check_response=check_response,
        check_push=check_push,
        request_ids=_MicrosecondIds(),
        use_credential=False,  # the app knows no device credential
        **kwargs,
    )


def app_upload_name(mic_device_id: str, speaker_slot_id: str) -> str:
    return f"recording_{mic_device_id}_{speaker_slot_id}.wav"


class AppPhone(Phone):
    """What every app phone does besides its role: follow the lobby, the phases and the results."""

    common_handlers = {
        "lobby.updated": "on_lobby_updated",
        events.PHASE_UPDATE: "on_phase_update",
        events.ANALYSIS_RESULTS: "on_analysis_results",
        events.ERROR: "on_error",
    }

    def __init__(self, client: DeviceClient, slot_id: str, world: SharedWorld, *, code: str = "") -> None:
        super().__init__(client, slot_id, world)
        self.code = code
        self.phases: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.session_errors: list[dict[str, Any]] = []

    async def on_lobby_updated(self, push: Push) -> None:
        """The app always calls ``lobby.get`` after ``lobby.updated``."""
        if self.code:
            await self.send("lobby.get", {"code": self.code})

    async def on_phase_update(self, push: Push) -> None:
        self.phases.append(str(push.data.get("phase")))

    async def on_analysis_results(self, push: Push) -> None:
        self.results.append(hard(push.data, "results", dict))

    async def on_error(self, push: Push) -> None:
        self.session_errors.append(push.data)  # the app ends its local session


class AppSpeakerPhone(AppPhone):
    handlers = {
        **AppPhone.common_handlers,
        events.START_MEASUREMENT: "on_start_measurement",
        events.REQUEST_AUDIO: "on_request_audio",
        events.START_PLAYBACK: "on_start_playback",
    }

    def __init__(self, client: DeviceClient, slot_id: str, world: SharedWorld, *, playback_s: float = 0.5) -> None:
        super().__init__(client, slot_id, world)
        self.playback_s = playback_s

    async def on_start_measurement(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        if push.data.get("speaker_device_id") not in (None, self.device_id):
            return
        await self.send(events.READY, {"session_id": session_id, "device_id": self.device_id})

    async def on_request_audio(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        url = f"/v1/measurement/audio?session_id={session_id}&sample_rate={SAMPLE_RATE_HZ}&format=wav"
        response = await self.world.http.get(url)
        if response.status_code != 200:
            raise ErrorReply("signal download", str(response.status_code), response.text[:200], {})
        body_hash = hashlib.sha256(response.content).hexdigest()
        header_hash = response.headers.get(AUDIO_HASH_HEADER)
        if header_hash is not None and header_hash.lower() != body_hash:
            raise HardCastError(f"{AUDIO_HASH_HEADER} {header_hash} is not the SHA-256 of the body ({body_hash})")
        expected = push.data.get("expected_hash")
        if expected is not None and expected.lower() != body_hash:
            raise HardCastError(f"request_audio.expected_hash {expected} is not the SHA-256 of {url} ({body_hash})")
        samples, rate_hz = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=False)
        self.world.signal_cache[url] = (samples, int(rate_hz), response.content)
        self.world.report(self.slot_id, f"downloaded the session's signal ({samples.size / rate_hz:.1f} s)")
        data = {"session_id": session_id, "device_id": self.device_id}
        if header_hash is not None:  # the app sends the hash back only when the download carried it
            data["audio_hash"] = header_hash
        await self.send(events.SPEAKER_AUDIO_READY, data)

    async def on_start_playback(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        self.world.report(self.slot_id, "playing the sweep")
        await asyncio.sleep(self.playback_s)
        await self.send(events.PLAYBACK_COMPLETE, {"session_id": session_id})


class AppMicrophonePhone(AppPhone):
    handlers = {
        **AppPhone.common_handlers,
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
        layout_slot: str,
        flaws: PhoneFlaws,
        rng: np.random.Generator,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(client, slot_id, world)
        self.layout_slot = layout_slot
        self.flaws = flaws
        self.rng = rng
        self.faults = faults or Faults()
        self.uploads: list[str] = []

    async def on_start_measurement(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        await self.send(events.READY, {"session_id": session_id, "device_id": self.device_id})

    async def on_start_recording(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        hard(push.data, "speaker_slot_id")
        await self.send(events.RECORDING_STARTED, {"session_id": session_id, "device_id": self.device_id})

    async def on_stop_recording(self, push: Push) -> None:
        session_id = hard(push.data, "session_id")
        speaker_slot_id = hard(push.data, "speaker_slot_id")
        endpoint = hard(push.data, "upload_endpoint")
        played_url = f"/v1/measurement/audio?session_id={session_id}&sample_rate={SAMPLE_RATE_HZ}&format=wav"
        speaker = self.world.slot_aliases.get(speaker_slot_id, speaker_slot_id)
        wav = await record_wav(self.world, played_url, speaker, self.layout_slot, self.flaws, self.rng)
        name = app_upload_name(self.device_id, speaker_slot_id)
        response = await self.world.http.post(
            endpoint + name, files={"file": (name, wav, "audio/wav")}, headers={"X-Device-Id": self.device_id}
        )
        if response.status_code != 200:  # the app accepts exactly 200
            raise HardCastError(f"upload of {name} answered {response.status_code}, the app accepts only 200")
        if not isinstance(response.json(), dict):
            raise HardCastError(f"upload of {name} did not answer a JSON object")
        self.uploads.append(name)
        self.world.report(self.slot_id, f"uploaded {name} ({len(wav) // 1024} KiB)")
        await self.send(events.RECORDING_UPLOADED, {"session_id": session_id, "upload_name": name})
