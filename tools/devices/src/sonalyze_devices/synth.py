"""What a virtual microphone "records": the played signal through the room, with a phone's flaws.

Pure numpy: the signal convolved with the room's impulse response, a random start delay, background
noise, and a sampling clock that runs ``drift_ppm`` fast or slow, at the phone's own sample rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal as sps


@dataclass(frozen=True, slots=True)
class PhoneFlaws:
    """How far a virtual phone departs from an ideal recorder."""

    start_delay_s: float = 0.2
    peak_to_noise_db: float = 50.0
    drift_ppm: float = 0.0
    recording_rate_hz: int = 48000

    @classmethod
    def random(
        cls, rng: np.random.Generator, *, max_drift_ppm: float = 100.0, recording_rate_hz: int = 48000
    ) -> PhoneFlaws:
        return cls(
            start_delay_s=float(rng.uniform(0.05, 0.6)),
            peak_to_noise_db=float(rng.uniform(45.0, 60.0)),
            drift_ppm=float(rng.uniform(-max_drift_ppm, max_drift_ppm)),
            recording_rate_hz=recording_rate_hz,
        )


def _resample(x: np.ndarray, ratio: float) -> np.ndarray:
    """Resample by ``ratio`` (output rate / input rate) with a polyphase filter."""
    fraction = Fraction(ratio).limit_denominator(20000)
    if fraction == 1:
        return x
    return sps.resample_poly(x, fraction.numerator, fraction.denominator)


def synthesize_recording(
    played: np.ndarray,
    played_rate_hz: int,
    impulse_response: np.ndarray,
    impulse_response_rate_hz: int,
    flaws: PhoneFlaws,
    rng: np.random.Generator,
) -> np.ndarray:
    """The recording (float32, mono, at ``flaws.recording_rate_hz`` as the phone's clock sees it).

    Parameters
    ----------
    played : 1-D signal the speaker played, at ``played_rate_hz``.
    impulse_response : the room's response from that speaker to this microphone.
    flaws : start delay, noise, clock drift and sample rate of the recording phone.
    """
    if played.ndim != 1 or impulse_response.ndim != 1:
        raise ValueError("played and impulse_response must be 1-D")
    ir = impulse_response
    if impulse_response_rate_hz != played_rate_hz:
        ir = _resample(ir, played_rate_hz / impulse_response_rate_hz)
    wet = sps.fftconvolve(played, ir)
    lead = np.zeros(int(round(flaws.start_delay_s * played_rate_hz)))
    at_air = np.concatenate([lead, wet])
    # the phone's clock runs (1 + ppm) fast: it takes that many more samples per true second
    true_rate_ratio = flaws.recording_rate_hz * (1.0 + flaws.drift_ppm * 1e-6) / played_rate_hz
    recorded = _resample(at_air, true_rate_ratio)
    peak = float(np.max(np.abs(recorded))) or 1.0
    recorded = recorded / peak * 0.5
    noise_rms = 0.5 * 10 ** (-flaws.peak_to_noise_db / 20)
    recorded = recorded + rng.normal(0.0, noise_rms, recorded.size)
    return recorded.astype(np.float32)
