"""The reference store: the exact signal behind every signal id, under ``MEASUREMENT_DATA_DIR/signals/``.

``{signal_id}.wav`` holds the 16-bit samples the phone downloaded and played, ``{signal_id}.json``
the parameters and timing. Both are written atomically; a signal is generated once and then served
from disk (and a small in-memory cache of WAV bytes).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import soundfile as sf

from sonalyze_measurement.analysis.audio_generator import SignalParams, render
from sonalyze_measurement.files import atomic_write_bytes, write_json

SIGNAL_ID_PATTERN: Final = r"^sig_[0-9a-f]{24}$"
WAV_CACHE_SIZE: Final = 8


@dataclass(frozen=True, slots=True)
class StoredSignal:
    signal_id: str
    params: SignalParams
    timing: dict[str, Any]
    wav_path: Path

    def describe(self) -> dict[str, Any]:
        """The JSON sibling of the audio: id, parameters and the timing of every part."""
        return {
            "signal_id": self.signal_id,
            "sample_rate_hz": self.params.sample_rate_hz,
            "duration_s": self.params.duration_s,
            "f_start_hz": self.params.f_start_hz,
            "f_end_hz": self.params.f_end_hz,
            "total_duration_s": self.timing["total_duration_s"],
            "format": "WAV, mono, 16-bit PCM",
            "timing": self.timing,
        }


class ReferenceStore:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "signals"
        self._lock = asyncio.Lock()
        self._wav_cache: OrderedDict[str, bytes] = OrderedDict()

    async def ensure(self, params: SignalParams) -> StoredSignal:
        """The stored signal for ``params``, generating it on first use."""
        stored = self.get(params.signal_id)
        if stored is not None:
            return stored
        async with self._lock:
            stored = self.get(params.signal_id)
            if stored is None:
                stored = await asyncio.to_thread(self._generate, params)
        return stored

    def get(self, signal_id: str) -> StoredSignal | None:
        if not re.fullmatch(SIGNAL_ID_PATTERN, signal_id):
            return None
        meta_path = self.directory / f"{signal_id}.json"
        wav_path = self.directory / f"{signal_id}.wav"
        if not (meta_path.is_file() and wav_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        return StoredSignal(signal_id, SignalParams(**meta["params"]), meta["timing"], wav_path)

    def wav_bytes(self, stored: StoredSignal) -> bytes:
        if (cached := self._wav_cache.get(stored.signal_id)) is not None:
            self._wav_cache.move_to_end(stored.signal_id)
            return cached
        data = stored.wav_path.read_bytes()
        self._wav_cache[stored.signal_id] = data
        while len(self._wav_cache) > WAV_CACHE_SIZE:
            self._wav_cache.popitem(last=False)
        return data

    def _generate(self, params: SignalParams) -> StoredSignal:
        pcm16, timing = render(params)
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        sf.write(buffer, pcm16, params.sample_rate_hz, subtype="PCM_16", format="WAV")
        signal_id = params.signal_id
        wav_path = self.directory / f"{signal_id}.wav"
        meta = {"signal_id": signal_id, "params": params.as_dict(), "timing": timing.as_dict()}
        atomic_write_bytes(wav_path, buffer.getvalue())
        # the JSON last: a signal counts as stored once both files exist
        write_json(self.directory / f"{signal_id}.json", meta)
        return StoredSignal(signal_id, params, meta["timing"], wav_path)

