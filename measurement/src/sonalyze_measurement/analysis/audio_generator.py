"""The measurement signal as the service hands it out: parameters, id, 16-bit samples.

The lib builds the float signal; the phone plays a 16-bit WAV, so the 16-bit samples are the
reference the analysis deconvolves with (what the speaker actually played). The id is a hash of
everything that determines those samples, so equal parameters always give the same id.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np

from sonalyze_acoustics.signals import (
    DEFAULT_F_START_HZ,
    DEFAULT_SWEEP_DURATION_S,
    SIGNAL_VERSION,
    SignalTiming,
    check_signal_parameters,
    default_f_end_hz,
    measurement_signal,
)
from sonalyze_protocol.errors import BadRequest

DEFAULT_SAMPLE_RATE_HZ: Final = 48000
PCM16_FULL_SCALE: Final = 32767


@dataclass(frozen=True, slots=True)
class SignalParams:
    """What determines a signal; the query parameters of ``/v1/measurement/audio``."""

    sample_rate_hz: int
    duration_s: float
    f_start_hz: float
    f_end_hz: float

    @property
    def signal_id(self) -> str:
        key = f"v{SIGNAL_VERSION}:pcm16:{self.sample_rate_hz}:{self.duration_s!r}:{self.f_start_hz!r}:{self.f_end_hz!r}"
        return "sig_" + hashlib.sha256(key.encode()).hexdigest()[:24]

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def resolve_params(
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    duration_s: float | None = None,
    f_start_hz: float | None = None,
    f_end_hz: float | None = None,
) -> SignalParams:
    """Fill in the defaults and check the bounds; raises `BadRequest` naming the parameter."""
    try:
        params = SignalParams(
            sample_rate_hz=int(sample_rate_hz),
            duration_s=float(DEFAULT_SWEEP_DURATION_S if duration_s is None else duration_s),
            f_start_hz=float(DEFAULT_F_START_HZ if f_start_hz is None else f_start_hz),
            f_end_hz=float(default_f_end_hz(sample_rate_hz) if f_end_hz is None else f_end_hz),
        )
    except OverflowError:  # a 500-digit sample_rate: no float holds it
        raise BadRequest("sample_rate, duration_s, f_start_hz and f_end_hz must be ordinary numbers") from None
    try:
        check_signal_parameters(params.sample_rate_hz, params.duration_s, params.f_start_hz, params.f_end_hz)
    except ValueError as exc:
        raise BadRequest(str(exc).replace("sample_rate_hz", "sample_rate")) from None
    return params


def render(params: SignalParams) -> tuple[np.ndarray, SignalTiming]:
    """The signal as 16-bit samples (int16, mono) and its timing."""
    signal = measurement_signal(
        params.sample_rate_hz,
        sweep_duration_s=params.duration_s,
        f_start_hz=params.f_start_hz,
        f_end_hz=params.f_end_hz,
    )
    pcm16 = np.round(signal.samples * PCM16_FULL_SCALE).astype(np.int16)
    return pcm16, signal.timing
