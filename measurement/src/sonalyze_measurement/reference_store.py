"""The reference store: the exact signal behind every signal id, under ``MEASUREMENT_DATA_DIR/signals/``.

``{signal_id}.wav`` holds the 16-bit samples the phone downloaded and played, ``{signal_id}.json``
the parameters and timing, ``{signal_id}.flac`` the same samples losslessly packed (written on first
request). All are written atomically; a signal is generated once and then served from disk (and a small
in-memory cache of bytes), so the same query always answers the same bytes and the same hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import soundfile as sf

from sonalyze_measurement.analysis.audio_generator import SignalParams, render
from sonalyze_measurement.files import atomic_write_bytes, write_json

SIGNAL_ID_PATTERN: Final = r"^sig_[0-9a-f]{24}$"
WAV_CACHE_SIZE: Final = 8
AUDIO_FORMATS: Final = ("wav", "flac")
"""What ``/v1/measurement/audio?format=`` serves: the same 16-bit samples in either container."""
MEDIA_TYPES: Final = {"wav": "audio/wav", "flac": "audio/flac"}
FORMAT_DESCRIPTIONS: Final = {"wav": "WAV, mono, 16-bit PCM", "flac": "FLAC, mono, 16-bit"}


@dataclass(frozen=True, slots=True)
class StoredSignal:
    signal_id: str
    params: SignalParams
    timing: dict[str, Any]
    wav_path: Path

    def describe(self, audio_format: str = "wav") -> dict[str, Any]:
        """The JSON sibling of the audio: id, parameters and the timing of every part."""
        return {
            "signal_id": self.signal_id,
            "sample_rate_hz": self.params.sample_rate_hz,
            "duration_s": self.params.duration_s,
            "f_start_hz": self.params.f_start_hz,
            "f_end_hz": self.params.f_end_hz,
            "total_duration_s": self.timing["total_duration_s"],
            "audio_duration_seconds": self.timing["total_duration_s"],
            "format": FORMAT_DESCRIPTIONS[audio_format],
            "audio_format": audio_format,
            "timing": self.timing,
        }


class ReferenceStore:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "signals"
        self._lock = asyncio.Lock()
        # bodies and hashes are read from worker threads (asyncio.to_thread) and hashing releases the GIL,
        # so a body and its hash are published together, under one lock
        self._cache_lock = threading.Lock()
        self._wav_cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._hashes: dict[tuple[str, str], str] = {}

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
        return self.audio_bytes(stored, "wav")

    def audio_bytes(self, stored: StoredSignal, audio_format: str = "wav") -> bytes:
        """The exact body served for ``format=audio_format`` (FLAC packed from the WAV on first use)."""
        return self._body_and_hash(stored, audio_format)[0]

    def _body_and_hash(self, stored: StoredSignal, audio_format: str) -> tuple[bytes, str]:
        key = (stored.signal_id, audio_format)
        with self._cache_lock:
            cached = self._wav_cache.get(key)
            if cached is not None:
                self._wav_cache.move_to_end(key)
                return cached, self._hashes[key]
        if audio_format == "wav":
            data = stored.wav_path.read_bytes()
        elif audio_format == "flac":
            data = self._flac_bytes(stored)
        else:
            raise ValueError(f"unknown audio format {audio_format!r}")
        digest = hashlib.sha256(data).hexdigest()
        with self._cache_lock:
            self._wav_cache[key] = data
            self._hashes[key] = digest
            while len(self._wav_cache) > WAV_CACHE_SIZE:
                self._wav_cache.popitem(last=False)
        return data, digest

    def audio_hash(self, stored: StoredSignal, audio_format: str = "wav") -> str:
        """SHA-256 (hex) of the exact body ``audio_bytes`` returns; what ``X-Audio-Hash`` carries."""
        with self._cache_lock:
            known = self._hashes.get((stored.signal_id, audio_format))
        return known if known is not None else self._body_and_hash(stored, audio_format)[1]

    def find_by_hash(self, audio_hash: str) -> StoredSignal | None:
        """The stored signal whose WAV (or already packed FLAC) body has this SHA-256, if any."""
        with self._cache_lock:
            hashes = list(self._hashes.items())
        for key, known in hashes:
            if known == audio_hash:
                return self.get(key[0])
        for meta_path in sorted(self.directory.glob("sig_*.json")):
            stored = self.get(meta_path.stem)
            if stored is None:
                continue
            formats = ["wav"] + (["flac"] if stored.wav_path.with_suffix(".flac").is_file() else [])
            if any(self.audio_hash(stored, audio_format) == audio_hash for audio_format in formats):
                return stored
        return None

    def _flac_bytes(self, stored: StoredSignal) -> bytes:
        path = stored.wav_path.with_suffix(".flac")
        if path.is_file():
            return path.read_bytes()
        samples, rate_hz = sf.read(stored.wav_path, dtype="int16")
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate_hz, subtype="PCM_16", format="FLAC")
        atomic_write_bytes(path, buffer.getvalue())
        return buffer.getvalue()

    def _generate(self, params: SignalParams) -> StoredSignal:
        pcm16, timing = render(params)
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        sf.write(buffer, pcm16, params.sample_rate_hz, subtype="PCM_16", format="WAV")
        signal_id = params.signal_id
        wav_path = self.directory / f"{signal_id}.wav"
        timing_dict = timing.as_dict()
        meta = {"signal_id": signal_id, "params": params.as_dict(), "timing": timing_dict}
        atomic_write_bytes(wav_path, buffer.getvalue())
        # the JSON last: a signal counts as stored once both files exist
        write_json(self.directory / f"{signal_id}.json", meta)
        return StoredSignal(signal_id, params, timing_dict, wav_path)
