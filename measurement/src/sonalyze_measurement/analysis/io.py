"""Reading and writing audio files (soundfile): the only place that touches WAV and FLAC bytes.

Recordings may be WAV (8/16/24/32-bit PCM, 32/64-bit float, also WAVE_FORMAT_EXTENSIBLE) or FLAC, at
8 to 192 kHz, mono or multichannel; analysis uses the first channel.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import soundfile as sf

MIN_SAMPLE_RATE_HZ: Final = 8000
MAX_SAMPLE_RATE_HZ: Final = 192000
ACCEPTED_FORMATS: Final = frozenset({"WAV", "WAVEX", "FLAC"})
SILENCE_PEAK: Final = 10 ** (-80 / 20)
"""A recording whose first channel never exceeds -80 dBFS holds no measurement."""
CLIP_LEVEL: Final = 0.999
"""Samples at or above this fraction of full scale count as clipped."""


class AudioRejected(ValueError):
    """The bytes are not a usable recording; the message says why (shown to the client)."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a stored recording is, from its header."""

    format: str
    subtype: str
    sample_rate_hz: int
    n_channels: int
    n_frames: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class Recording:
    """The first channel as float64 in [-1, 1] and the header it came from."""

    samples: np.ndarray
    info: AudioInfo


def inspect_audio(path: Path) -> AudioInfo:
    """Validate a recording file completely (header, length, decodability, silence) and describe it.

    Raises
    ------
    AudioRejected
        Empty, not WAV/FLAC, truncated, undecodable, sample rate out of 8-192 kHz, no frames, or silent.
    """
    recording = read_recording(path)
    if float(np.max(np.abs(recording.samples))) < SILENCE_PEAK:
        raise AudioRejected("recording is silent (its first channel stays below -80 dBFS)")
    return recording.info


def read_info(path: Path) -> AudioInfo:
    """The header of a file already validated by `inspect_audio`."""
    info = sf.info(str(path))
    return AudioInfo(info.format, info.subtype, int(info.samplerate), int(info.channels), int(info.frames))


def read_recording(path: Path) -> Recording:
    """Read the first channel of a WAV or FLAC file as float64; raises `AudioRejected` with the reason."""
    size_bytes = os.path.getsize(path)
    if size_bytes == 0:
        raise AudioRejected("upload is empty (zero bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioRejected(f"not a WAV or FLAC recording ({_reason(exc)})") from None
    if info.format not in ACCEPTED_FORMATS:
        raise AudioRejected(f"unsupported audio format {info.format}; send WAV or FLAC")
    if not MIN_SAMPLE_RATE_HZ <= info.samplerate <= MAX_SAMPLE_RATE_HZ:
        raise AudioRejected(f"sample rate {info.samplerate} Hz is outside {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
    if info.format in {"WAV", "WAVEX"}:
        _check_wav_length(path, size_bytes)
    if info.frames <= 0:
        raise AudioRejected("recording has no audio frames (zero length)")
    try:
        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioRejected(f"recording cannot be decoded, probably truncated ({_reason(exc)})") from None
    if data.shape[0] < info.frames:
        raise AudioRejected(f"recording is truncated: {data.shape[0]} of {info.frames} frames decodable")
    samples = np.ascontiguousarray(data[:, 0])
    if not np.all(np.isfinite(samples)):
        raise AudioRejected("recording contains NaN or infinite samples")
    audio_info = AudioInfo(info.format, info.subtype, int(info.samplerate), int(info.channels), int(data.shape[0]))
    return Recording(samples=samples, info=audio_info)


def clipped_samples(samples: np.ndarray) -> int:
    """How many samples sit at full scale (a clipped microphone or a limiter)."""
    return int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))


def write_wav(path: Path, samples: np.ndarray, sample_rate_hz: int, subtype: str = "FLOAT") -> None:
    """Write a mono WAV atomically (temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(str(tmp), samples, int(sample_rate_hz), subtype=subtype, format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A mono WAV written by `write_wav` (or any readable file's first channel) and its rate."""
    data, rate_hz = sf.read(str(path), dtype="float64", always_2d=True)
    return np.ascontiguousarray(data[:, 0]), int(rate_hz)


def _check_wav_length(path: Path, size_bytes: int) -> None:
    """A RIFF file whose data chunk claims more bytes than the file holds was cut off in transfer."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
            return  # libsndfile accepted it; nothing we can check by hand
        if header[:4] == b"RF64":
            return
        position = 12
        while position + 8 <= size_bytes:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return  # streaming writer that never patched the size; frames checked by the caller
                available = size_bytes - position - 8
                if chunk_size > available:
                    raise AudioRejected(
                        f"recording is truncated: its data chunk declares {chunk_size} bytes, "
                        f"the upload holds {available}"
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text[:200]
