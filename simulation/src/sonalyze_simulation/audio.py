"""WAV encoding of impulse responses (the only file format the service writes)."""

from __future__ import annotations

import io
from typing import Final, Literal

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

WavFormat = Literal["float32", "pcm16"]
PCM16_PEAK: Final = 10 ** (-1 / 20)
"""pcm16 responses are scaled so their peak sits at -1 dBFS."""


def encode_wav(samples: NDArray[np.float32], sample_rate_hz: int, wav_format: WavFormat = "float32") -> bytes:
    """Mono WAV bytes: ``float32`` keeps the simulated amplitude as is; ``pcm16`` is peak-normalised."""
    buffer = io.BytesIO()
    if wav_format == "pcm16":
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        scaled = samples * (PCM16_PEAK / peak) if peak > 0 else samples
        sf.write(buffer, scaled.astype(np.float32), sample_rate_hz, subtype="PCM_16", format="WAV")
    else:
        sf.write(buffer, samples.astype(np.float32), sample_rate_hz, subtype="FLOAT", format="WAV")
    return buffer.getvalue()
