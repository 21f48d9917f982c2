"""From a recording on the phone's clock to an impulse response on the speaker's clock.

Thin glue over ``sonalyze_acoustics``: pick the chirp and sweep out of the stored reference signal,
find the chirps, correct rate and drift, deconvolve, locate the direct sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sonalyze_acoustics.alignment import AlignedRecording, align_recording, find_sync_chirps
from sonalyze_acoustics.deconvolution import ImpulseResponse, deconvolve_sweep
from sonalyze_acoustics.parameters import DirectSound, find_direct_sound


@dataclass(frozen=True, slots=True)
class Reference:
    """The played signal (float samples of the 16-bit WAV) and its timing dict from the reference store."""

    samples: np.ndarray
    timing: dict[str, Any]

    @property
    def sample_rate_hz(self) -> int:
        return int(self.timing["sample_rate_hz"])

    @property
    def chirp(self) -> np.ndarray:
        start = self.timing["chirp1_start_samples"]
        return self.samples[start : start + self.timing["chirp_n_samples"]]

    @property
    def sweep(self) -> np.ndarray:
        return self.samples[self.timing["sweep_start_samples"] : self.timing["sweep_end_samples"]]


@dataclass(frozen=True, slots=True)
class Measured:
    aligned: AlignedRecording
    ir: ImpulseResponse
    direct: DirectSound


def measure_impulse_response(recording: np.ndarray, recording_rate_hz: float, reference: Reference) -> Measured:
    """Chirps -> drift -> aligned recording -> impulse response -> direct sound.

    Raises ``sonalyze_acoustics.alignment.SyncNotFound`` when the chirps are not in the recording.
    """
    timing = reference.timing
    fs = reference.sample_rate_hz
    sync = find_sync_chirps(recording, recording_rate_hz, reference.chirp, fs, timing["chirp_spacing_s"])
    aligned = align_recording(recording, sync, fs, timing["chirp1_start_s"], timing["n_samples"])
    ir = deconvolve_sweep(
        aligned.samples,
        reference.sweep,
        fs,
        sweep_start_index=timing["sweep_start_samples"],
        f_start_hz=timing["f_start_hz"],
        f_end_hz=timing["f_end_hz"],
        ir_duration_s=timing["decay_s"],
    )
    direct = find_direct_sound(ir.samples, fs)
    return Measured(aligned=aligned, ir=ir, direct=direct)
