"""Finding the two sync chirps in a recording, the clock drift between them, and the aligned recording.

A phone's microphone starts recording at an unknown moment, often at another sample rate than the
signal (44.1 kHz for a 48 kHz signal), and its clock runs a few tens to hundreds of ppm off the
speaker's. The signal carries the same chirp twice, a known time apart (``chirp_spacing_s``):

1. a matched filter (the chirp, resampled to the recording's rate) gives an envelope whose peaks
   are the chirps as they arrived, reverberation included;
2. the pair of peaks whose spacing fits the nominal one within ``max_drift_ppm`` is chosen, which
   ignores noise bursts, the sweep and any single loud event;
3. the measured spacing in recording samples over the nominal spacing in seconds is the
   microphone's effective sample rate; its deviation from the nominal rate is the drift;
4. one band-limited (FFT) resampling from that effective rate to the signal's rate corrects both
   the rate change and the drift, and the first chirp places the signal's sample 0.

Both chirps pass through the same room, so whichever reflection peaks the envelope peaks in both:
the spacing, and hence the drift, does not depend on which arrival was picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage
from scipy import signal as sp_signal

MAX_DRIFT_PPM: Final = 1000.0
DETECTION_THRESHOLD_DB: Final = 15.0
"""A chirp counts as found when its envelope peak stands this far above the envelope's median."""
_EDGE_TAPER_S: Final = 0.005


class SyncNotFound(ValueError):
    """The recording does not contain both sync chirps at the expected spacing; the message says why."""


@dataclass(frozen=True, slots=True)
class SyncChirps:
    """Both chirps as found in the recording, in recording samples (sub-sample precision)."""

    chirp1_index: float
    chirp2_index: float
    chirp1_strength_db: float
    chirp2_strength_db: float
    recording_rate_hz: float
    effective_rate_hz: float
    """Recording samples per second of the signal's clock."""

    @property
    def drift_ppm(self) -> float:
        """Positive when the microphone's clock runs fast relative to the speaker's."""
        return (self.effective_rate_hz / self.recording_rate_hz - 1.0) * 1e6


@dataclass(frozen=True, slots=True)
class AlignedRecording:
    """The recording resampled to the signal's clock and rate; ``samples[0]`` is the signal's sample 0."""

    samples: np.ndarray
    sample_rate_hz: float
    offset_s: float
    """Where the signal starts in the recording, in seconds of the recording (negative: started late)."""
    drift_ppm: float
    sync: SyncChirps


def find_sync_chirps(
    recording: np.ndarray,
    recording_rate_hz: float,
    chirp: np.ndarray,
    signal_rate_hz: float,
    chirp_spacing_s: float,
    *,
    max_drift_ppm: float = MAX_DRIFT_PPM,
    threshold_db: float = DETECTION_THRESHOLD_DB,
) -> SyncChirps:
    """Locate both sync chirps and derive the microphone's effective sample rate.

    Parameters
    ----------
    recording : ndarray, shape (n,)
        The microphone's samples, any level.
    recording_rate_hz : float
        Nominal sample rate of the recording, 8 kHz to 192 kHz.
    chirp : ndarray
        The sync chirp at ``signal_rate_hz`` (as in the signal).
    signal_rate_hz : float
        Sample rate of the played signal.
    chirp_spacing_s : float
        Start of chirp 2 minus start of chirp 1 in the signal, in seconds.
    max_drift_ppm : float
        Largest clock drift searched for (default 1000 ppm).
    threshold_db : float
        Minimal envelope peak over the envelope median for a chirp to count as found.

    Returns
    -------
    SyncChirps
        Start indices of both chirps in the recording and the effective sample rate
        ``(chirp2_index - chirp1_index) / chirp_spacing_s``.

    Raises
    ------
    SyncNotFound
        When the first or second chirp does not stand out from the noise at the right spacing.
    """
    recording = np.asarray(recording, dtype=np.float64)
    if recording.ndim != 1:
        raise ValueError(f"recording must be 1-D, got shape {recording.shape}")
    if recording_rate_hz <= 0 or signal_rate_hz <= 0:
        raise ValueError("recording_rate_hz and signal_rate_hz must be positive")
    if chirp_spacing_s <= 0:
        raise ValueError(f"chirp_spacing_s must be positive, got {chirp_spacing_s}")
    if not 0 < max_drift_ppm <= 10000:
        raise ValueError(f"max_drift_ppm must be in (0, 10000], got {max_drift_ppm}")

    template = _resample_rational(np.asarray(chirp, dtype=np.float64), recording_rate_hz, signal_rate_hz)
    spacing_samples = chirp_spacing_s * recording_rate_hz
    if len(recording) < spacing_samples + len(template):
        raise SyncNotFound(
            f"recording is {len(recording) / recording_rate_hz:.2f} s long, shorter than the signal's "
            f"two chirps ({chirp_spacing_s + len(template) / recording_rate_hz:.2f} s)"
        )
    envelope = _matched_envelope(recording, template)
    median = float(np.median(envelope))
    if median <= 0 or not np.isfinite(median):
        raise SyncNotFound("recording is silent: no sync chirp found")

    tolerance = int(np.ceil(max_drift_ppm * 1e-6 * spacing_samples)) + 2
    nominal = int(round(spacing_samples))
    # score of "chirp 1 here": its envelope plus the best envelope where chirp 2 may be
    window_max = ndimage.maximum_filter1d(envelope, size=2 * tolerance + 1, mode="constant")
    n_candidates = len(envelope) - nominal
    score = envelope[:n_candidates] + window_max[nominal:]
    first = int(np.argmax(score))
    lo = max(0, first + nominal - tolerance)
    hi = min(len(envelope), first + nominal + tolerance + 1)
    second = lo + int(np.argmax(envelope[lo:hi]))

    strength1_db = _strength_db(envelope[first], median)
    strength2_db = _strength_db(envelope[second], median)
    if strength1_db < threshold_db or strength2_db < threshold_db:
        weak = "first" if strength1_db < strength2_db else "second"
        raise SyncNotFound(
            f"sync chirps not found: the {weak} chirp stands only "
            f"{min(strength1_db, strength2_db):.1f} dB above the noise (needs {threshold_db:.0f} dB); "
            "the recording must contain the whole signal"
        )
    index1 = first + _parabolic_offset(envelope, first)
    index2 = second + _parabolic_offset(envelope, second)
    effective_rate_hz = (index2 - index1) / chirp_spacing_s
    # a chirp stretched by the drift peaks early or late in a matched filter (range-Doppler coupling of a
    # linear chirp); the same for both chirps, so the drift is unaffected, but the offset is corrected
    bias = _stretch_bias_samples(template, effective_rate_hz / recording_rate_hz - 1.0)
    return SyncChirps(
        chirp1_index=index1 - bias,
        chirp2_index=index2 - bias,
        chirp1_strength_db=strength1_db,
        chirp2_strength_db=strength2_db,
        recording_rate_hz=float(recording_rate_hz),
        effective_rate_hz=effective_rate_hz,
    )


def align_recording(
    recording: np.ndarray,
    sync: SyncChirps,
    signal_rate_hz: float,
    chirp1_start_s: float,
    n_samples: int,
) -> AlignedRecording:
    """Resample the recording from its effective rate to the signal's rate and cut it to the signal.

    Parameters
    ----------
    recording : ndarray, shape (n,)
        The recording at ``sync.recording_rate_hz``.
    sync : SyncChirps
        From `find_sync_chirps`.
    signal_rate_hz : float
        The signal's sample rate; the result has this rate on the speaker's clock.
    chirp1_start_s : float
        Start of chirp 1 in the signal.
    n_samples : int
        Length of the result (normally the signal's length); parts the recording does not cover
        are zeros.

    Returns
    -------
    AlignedRecording
        ``samples[k]`` is what the microphone heard while the speaker played signal sample ``k``
        (plus the propagation delay).
    """
    recording = np.asarray(recording, dtype=np.float64)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    ratio = signal_rate_hz / sync.effective_rate_hz  # output samples per recording sample
    start = sync.chirp1_index - chirp1_start_s * sync.effective_rate_hz  # signal sample 0, in recording samples
    margin = 64
    first = int(np.floor(start)) - margin
    needed = int(np.ceil(n_samples / ratio)) + 2 * margin
    crop = _take(recording, first, needed)
    n_in, n_out = _fft_lengths(len(crop), ratio)
    crop = np.concatenate([crop, np.zeros(n_in - len(crop))])
    taper = max(1, int(_EDGE_TAPER_S * sync.recording_rate_hz))
    crop[:taper] *= np.linspace(0.0, 1.0, taper)
    exact_shift = (start - first) * n_out / n_in  # signal sample 0, in output samples
    shift = int(np.floor(exact_shift))
    resampled = _fft_resample(crop, n_out, advance=exact_shift - shift)
    samples = resampled[shift : shift + n_samples]
    if len(samples) < n_samples:
        samples = np.concatenate([samples, np.zeros(n_samples - len(samples))])
    return AlignedRecording(
        samples=samples,
        sample_rate_hz=float(signal_rate_hz),
        offset_s=start / sync.recording_rate_hz,
        drift_ppm=sync.drift_ppm,
        sync=sync,
    )


def resample(samples: np.ndarray, from_rate_hz: float, to_rate_hz: float) -> np.ndarray:
    """Band-limited resampling between two nominal rates (polyphase for rational ratios)."""
    return _resample_rational(np.asarray(samples, dtype=np.float64), to_rate_hz, from_rate_hz)


def _resample_rational(samples: np.ndarray, to_rate_hz: float, from_rate_hz: float) -> np.ndarray:
    if to_rate_hz == from_rate_hz:
        return samples.copy()
    ratio = Fraction(to_rate_hz / from_rate_hz).limit_denominator(1000)
    return sp_signal.resample_poly(samples, ratio.numerator, ratio.denominator)


def _matched_envelope(recording: np.ndarray, template: np.ndarray) -> np.ndarray:
    """|analytic cross-correlation|: index k is the envelope for the template starting at sample k."""
    n_fft = sp_fft.next_fast_len(len(recording) + len(template))
    spectrum = sp_fft.rfft(recording, n_fft) * np.conj(sp_fft.rfft(template, n_fft))
    analytic = np.zeros(n_fft, dtype=np.complex128)
    analytic[: len(spectrum)] = spectrum
    analytic[1 : len(spectrum) - (1 if n_fft % 2 == 0 else 0)] *= 2.0
    correlation = sp_fft.ifft(analytic)[: len(recording) - len(template) + 1]
    return np.abs(correlation)


def _stretch_bias_samples(template: np.ndarray, drift: float) -> float:
    """Where the matched filter peaks for a copy of ``template`` stretched by ``1 + drift``, in samples."""
    if abs(drift) < 1e-6:
        return 0.0
    n_pad = sp_fft.next_fast_len(16 * len(template), real=True)
    lead = len(template)  # the peak may come before the start: keep room in front
    padded = np.zeros(n_pad)
    padded[lead : 2 * lead] = template
    n_stretched = int(round(n_pad * (1.0 + drift)))
    realised = n_stretched / n_pad - 1.0
    if realised == 0.0:
        return 0.0
    stretched = _fft_resample(padded, n_stretched)
    window = _matched_envelope(stretched[: 4 * lead], template)
    peak = int(np.argmax(window))
    stretched_start = lead * (1.0 + realised)
    return (peak + _parabolic_offset(window, peak) - stretched_start) * drift / realised


def _strength_db(peak: float, median: float) -> float:
    return float(20 * np.log10(max(peak, 1e-300) / median))


def _parabolic_offset(values: np.ndarray, index: int) -> float:
    if index <= 0 or index >= len(values) - 1:
        return 0.0
    left, centre, right = values[index - 1], values[index], values[index + 1]
    denominator = left - 2 * centre + right
    if denominator >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))


def _take(samples: np.ndarray, first: int, n_samples: int) -> np.ndarray:
    """``samples[first : first + n_samples]`` with zeros where that range leaves the array."""
    out = np.zeros(n_samples)
    lo, hi = max(first, 0), min(first + n_samples, len(samples))
    if hi > lo:
        out[lo - first : hi - first] = samples[lo:hi]
    return out


def _fft_lengths(n_min: int, ratio: float) -> tuple[int, int]:
    """Input and output lengths for an FFT resampling by ``ratio``: both fast, ``n_in * ratio`` near an integer.

    The rounding of ``n_out`` is a residual rate error of up to ``0.5 / n_out``; among the fast lengths
    just above ``n_min`` the one with the smallest rounding is taken (then typically < 0.1 ppm).
    """
    best: tuple[float, int, int] | None = None
    n_in = sp_fft.next_fast_len(n_min, real=True)
    while n_in <= 1.02 * n_min + 64:
        exact = n_in * ratio
        n_out = int(round(exact))
        if sp_fft.next_fast_len(n_out, real=True) == n_out:
            error = abs(exact - n_out)
            if best is None or error < best[0]:
                best = (error, n_in, n_out)
            if error < 0.02:
                break
        n_in = sp_fft.next_fast_len(n_in + 1, real=True)
    if best is None:
        n_in = sp_fft.next_fast_len(n_min, real=True)
        return n_in, int(round(n_in * ratio))
    return best[1], best[2]


def _fft_resample(samples: np.ndarray, n_out: int, advance: float = 0.0) -> np.ndarray:
    """Band-limited resampling of a real signal to ``n_out`` samples, advanced by a fraction of a sample.

    As scipy.signal.resample (rfft-based); ``advance`` (output samples, in [0, 1)) is a linear phase,
    so ``out[n]`` is the signal at output time ``n + advance``.
    """
    n_in = len(samples)
    spectrum = sp_fft.rfft(samples)
    n_keep = min(len(spectrum), n_out // 2 + 1)
    out_spectrum = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    out_spectrum[:n_keep] = spectrum[:n_keep]
    if advance:
        out_spectrum *= np.exp(2j * np.pi * np.arange(len(out_spectrum)) * advance / n_out)
    if n_out % 2 == 0:
        out_spectrum[n_out // 2] = out_spectrum[n_out // 2].real
    return sp_fft.irfft(out_spectrum, n_out) * (n_out / n_in)
