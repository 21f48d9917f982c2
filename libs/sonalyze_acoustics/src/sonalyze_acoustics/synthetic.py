"""Synthetic impulse responses with known truth, for tests and benchmarks of the analysis.

A synthetic response is a direct sound (an impulse band-limited to 88 Hz-11.3 kHz) followed, from the next
sample on, by seven octave-band components: Gaussian noise band-limited (brick-wall, in the frequency
domain) to each octave of :data:`~sonalyze_acoustics.bands.OCTAVE_BANDS_HZ` and shaped by
``exp(-t / (2 tau_b))`` with ``tau_b = T60_b / (6 ln 10)``, so band ``b`` decays by 60 dB in ``T60_b``.
Every component starts at the same energy per hertz (times an optional per-band gain), so white noise
gives every band the same impulse-to-noise ratio. Optional white Gaussian noise is added over the whole
response, at a level ``inr_db`` below the decay's starting energy within 88 Hz-11.3 kHz.

Two truths are reported. ``truth`` is exact for this realisation: the ISO 3382-1 values of the clean
(noise-free, perfectly band-separated) components themselves, the direct sound counted as an impulse of its
band energy at the direct index. A single noise realisation of a short low-frequency decay fluctuates by
several per cent around its design (the statistical uncertainty of reverberation, ISO 3382-2 A.3), so
this is the value an ideal analysis would return. ``expected`` is the analytic design value. For a band
with direct energy ``E_d`` and reverberant energy ``E_r`` (expected
values, from the design) the energy decay curve is ``EDC(0) = E_d + E_r`` and
``EDC(t > 0) = E_r exp(-t / tau)``; EDT, T20 and T30 are the ISO 3382-1 regressions over that curve,
C50, C80, D50 and DRR follow in closed form, and the MTF is
``m(F) = |E_d + E_r / (1 + j 2 pi F tau)| / (E_d + E_r)`` (for ``E_d = 0`` this is
``1 / sqrt(1 + (2 pi F T / 13.8)**2)``, IEC 60268-16 / Houtgast and Steeneken). Broadband values use the sum of
the seven components. The noise is not in the truth: the analysis must remove it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from sonalyze_acoustics import bands as _bands
from sonalyze_acoustics import sti as _sti

LN_1E6: Final = 6.0 * math.log(10.0)
"""``ln(10**6)`` = 13.8155: a 60 dB energy decay in T60 means ``tau = T60 / 13.8155``."""


TONE_SPACING_HZ: Final = 60.0
"""Minimum spacing of the multitone carriers: their beats (>= 25 Hz) stay above the 12.5 Hz STI modulation."""

TONE_HALF_RANGE_OCTAVES: Final = 0.3
"""Multitone carriers fill the band centre +-0.3 octave, away from the skirts shared with the neighbours."""


@dataclass(frozen=True)
class SyntheticIr:
    """A synthetic impulse response and its true parameters.

    Attributes
    ----------
    ir : numpy.ndarray
        The response (float64), with ``pre_delay_s`` of noise (or silence) before the direct sound.
    sample_rate_hz : float
    direct_index : int
        Index of the direct sound's peak.
    truth : dict
        ``"broadband"`` and ``"125"``..``"8000"`` -> dict of ``edt_s, t20_s, t30_s, c50_db, c80_db, d50, drr_db``
        of the clean components of this realisation.
    sti : float
        STI of the clean components under the default assumptions of :mod:`sonalyze_acoustics.sti`.
    expected : dict
        The same keys: analytic design values (expectations over realisations).
    expected_sti : float
        STI from the analytic MTFs.
    noise_power : float
        Variance of the added white noise (0 when noise free).
    peak_to_noise_db : float
        ``10 log10(max(ir**2) / noise_power)``, the classic peak-to-noise ratio (inf when noise free).
    """

    ir: np.ndarray
    sample_rate_hz: float
    direct_index: int
    truth: dict[str, dict[str, float]]
    sti: float
    expected: dict[str, dict[str, float]]
    expected_sti: float
    noise_power: float
    peak_to_noise_db: float


def synthetic_ir(
    t60_s: tuple[float, ...],
    drr_db: float,
    sample_rate_hz: float,
    rng: np.random.Generator,
    *,
    inr_db: float | None = None,
    band_inr_offset_db: tuple[float, ...] = (0.0,) * 7,
    pre_delay_s: float = 0.05,
    duration_s: float | None = None,
    excitation: str = "multitone",
    gap_s: float = 0.0025,
) -> SyntheticIr:
    """Build a synthetic impulse response with designed per-band decays and direct-to-reverberant ratio.

    Parameters
    ----------
    t60_s : tuple of 7 floats
        Reverberation time of each octave band 125 Hz-8 kHz in seconds (0.1-10).
    drr_db : float
        Broadband direct-to-reverberant energy ratio in dB (within 88 Hz-11.3 kHz).
    sample_rate_hz : float
        Sample rate in Hz, at least 32 kHz (the 8 kHz band must fit).
    rng : numpy.random.Generator
        Source of the noise (seed it for reproducible cases).
    inr_db : float, optional
        Decay start (per-sample energy of the reverberation within 88 Hz-11.3 kHz, at the direct sound) over
        the added white noise's power within that range, in dB; None for no noise.
    band_inr_offset_db : tuple of 7 floats
        Change of each band's impulse-to-noise ratio in dB, <= 0, made by adding band-limited noise (e.g.
        -25 dB at 125 Hz and 250 Hz imitates a phone speaker that gives little low-frequency energy).
    pre_delay_s : float
        Time before the direct sound, >= 0.
    duration_s : float, optional
        Total duration; default long enough for the slowest band to fall 30 dB below the noise (or 100 dB).

    gap_s : float
        Initial time gap in seconds between the direct sound and the start of the reverberation (the first
        reflection), >= 1 sample. Without a gap the direct sound and the reverberation interfere within the
        time resolution of the low bands, and a per-band DRR is not defined to better than a few dB there.
    excitation : {"multitone", "noise"}
        The band carriers. ``"multitone"``: tones with random phases, at least :data:`TONE_SPACING_HZ` apart,
        within the middle 0.6 octave of each band: their beats lie above the STI's modulation frequencies
        and the band energy is deterministic, so ``truth`` equals ``expected`` to a fraction of a per cent
        and an analysis filter sees the design. ``"noise"``: Gaussian noise with brick-wall band limits,
        closer to a real room but with the realisation's statistical scatter (only ``truth`` is exact).

    Returns
    -------
    SyntheticIr
    """
    if excitation not in ("multitone", "noise"):
        raise ValueError(f"excitation must be 'multitone' or 'noise', got {excitation!r}")
    if len(t60_s) != 7 or not all(0.1 <= t <= 10.0 for t in t60_s):
        raise ValueError(f"t60_s must have 7 values between 0.1 and 10 s, got {t60_s}")
    if len(band_inr_offset_db) != 7 or any(offset > 0 for offset in band_inr_offset_db):
        raise ValueError("band_inr_offset_db must have 7 values <= 0")
    if sample_rate_hz < 32000:
        raise ValueError(f"sample_rate_hz must be at least 32000, got {sample_rate_hz}")
    if pre_delay_s < 0:
        raise ValueError(f"pre_delay_s must be >= 0, got {pre_delay_s}")

    fs = float(sample_rate_hz)
    depth_db = (inr_db + 30.0) if inr_db is not None else 100.0
    if duration_s is None:
        duration_s = pre_delay_s + max(t60_s) * depth_db / 60.0 + 0.2
    n_samples = int(round(duration_s * fs))
    direct_index = int(round(pre_delay_s * fs))
    n_gap = max(int(round(gap_s * fs)), 1)
    n_decay = n_samples - direct_index - n_gap
    if n_decay < int(0.05 * fs):
        raise ValueError("duration_s is too short for the response")

    edges = [_bands.band_edges_hz(band) for band in _bands.OCTAVE_BANDS_HZ]
    bandwidths_hz = np.array([high - low for low, high in edges])
    total_bandwidth_hz = float(bandwidths_hz.sum())
    taus_s = np.asarray(t60_s, dtype=np.float64) / LN_1E6

    # Per-sample reverberant energy at its start of band b: A_b = a * bandwidth_b. Total reverberant
    # energy (sum over samples) E_r,b = A_b / (1 - q_b), q_b = exp(-1 / (tau_b fs)).
    q = np.exp(-1.0 / (taus_s * fs))
    geometric = 1.0 / (1.0 - q)
    direct_energy = 1.0
    ungained_reverb = float(np.sum(bandwidths_hz * geometric))
    a = direct_energy / (10.0 ** (drr_db / 10.0) * ungained_reverb)
    start_energy = a * bandwidths_hz
    reverb_energy = start_energy * geometric
    direct_band_energy = direct_energy * bandwidths_hz / total_bandwidth_hz

    ir = np.zeros(n_samples)
    t_s = np.arange(n_decay) / fs
    components = np.empty((7, n_decay))
    for row, band in enumerate(_bands.OCTAVE_BANDS_HZ):
        carrier = _carrier(band, edges[row], n_decay, fs, rng, excitation)
        components[row] = np.sqrt(start_energy[row]) * carrier * np.exp(-t_s / (2.0 * taus_s[row]))
    ir[direct_index + n_gap :] = components.sum(axis=0)

    # The direct sound is one sample: a flat spectrum, so band b holds bandwidth_b / (fs / 2) of its energy.
    ir[direct_index] = math.sqrt(direct_energy * (fs / 2.0) / total_bandwidth_hz)

    noise_power = 0.0
    if inr_db is not None:
        in_range_noise_power = float(np.sum(start_energy)) / 10.0 ** (inr_db / 10.0)
        noise_power = in_range_noise_power * (fs / 2.0) / total_bandwidth_hz
        ir += rng.standard_normal(n_samples) * math.sqrt(noise_power)
        extra = 10.0 ** (-np.asarray(band_inr_offset_db, dtype=np.float64) / 10.0) - 1.0
        if np.any(extra > 0):
            white = np.fft.rfft(rng.standard_normal(n_samples))
            freqs_full_hz = np.fft.rfftfreq(n_samples, d=1.0 / fs)
            shaping = np.zeros(freqs_full_hz.size)
            for row, (low_hz, high_hz) in enumerate(edges):
                shaping[(freqs_full_hz >= low_hz) & (freqs_full_hz < high_hz)] = math.sqrt(extra[row])
            ir += np.fft.irfft(white * shaping, n_samples) * math.sqrt(noise_power)

    expected: dict[str, dict[str, float]] = {}
    truth: dict[str, dict[str, float]] = {}
    for row, band in enumerate(_bands.OCTAVE_BANDS_HZ):
        expected[str(band)] = _truth([(reverb_energy[row], taus_s[row])], direct_band_energy[row], n_gap / fs)
        truth[str(band)] = _realised_truth(components[row] ** 2, direct_band_energy[row], fs, n_gap)
    expected["broadband"] = _truth(
        list(zip(reverb_energy, taus_s, strict=True)), float(np.sum(direct_band_energy)), n_gap / fs
    )
    truth["broadband"] = _realised_truth(components.sum(axis=0) ** 2, float(np.sum(direct_band_energy)), fs, n_gap)
    mtf = np.stack(
        [_analytic_mtf(direct_band_energy[row], reverb_energy[row], taus_s[row], n_gap / fs) for row in range(7)]
    )
    expected_sti = _sti.speech_transmission_index(mtf).sti
    realised_mtf = np.stack(
        [_realised_mtf(components[row] ** 2, direct_band_energy[row], fs, n_gap) for row in range(7)]
    )
    sti_value = _sti.speech_transmission_index(realised_mtf).sti
    peak = float(np.max(ir**2))
    return SyntheticIr(
        ir=ir,
        sample_rate_hz=fs,
        direct_index=direct_index,
        truth=truth,
        sti=sti_value,
        expected=expected,
        expected_sti=expected_sti,
        noise_power=noise_power,
        peak_to_noise_db=10.0 * math.log10(peak / noise_power) if noise_power > 0 else math.inf,
    )


def _carrier(
    band_hz: int, edges_hz: tuple[float, float], n_samples: int, fs: float, rng: np.random.Generator, excitation: str
) -> np.ndarray:
    """Unit-power carrier of one band: Gaussian band noise, or tones on FFT bins with random phases."""
    freqs_hz = np.fft.rfftfreq(n_samples, d=1.0 / fs)
    spectrum = np.zeros(freqs_hz.size, dtype=np.complex128)
    if excitation == "noise":
        mask = (freqs_hz >= edges_hz[0]) & (freqs_hz < edges_hz[1])
        spectrum[mask] = rng.standard_normal(int(mask.sum())) + 1j * rng.standard_normal(int(mask.sum()))
    else:
        center_hz = _bands.exact_center_hz(band_hz)
        low_hz, high_hz = center_hz * 2.0**-TONE_HALF_RANGE_OCTAVES, center_hz * 2.0**TONE_HALF_RANGE_OCTAVES
        n_tones = int((high_hz - low_hz) // TONE_SPACING_HZ) + 1
        bins = np.unique(np.round(np.linspace(low_hz, high_hz, n_tones) * n_samples / fs).astype(int))
        spectrum[bins] = np.exp(2j * np.pi * rng.random(bins.size))
    carrier = np.fft.irfft(spectrum, n_samples)
    return carrier / np.sqrt(np.mean(carrier**2))


def _analytic_mtf(direct_energy: float, reverb_energy: float, tau_s: float, gap_s: float) -> np.ndarray:
    omega = 2.0 * np.pi * np.asarray(_sti.MODULATION_FREQUENCIES_HZ)
    reverb = reverb_energy * np.exp(-1j * omega * gap_s) / (1.0 + 1j * omega * tau_s)
    return np.abs(direct_energy + reverb) / (direct_energy + reverb_energy)


def _realised_mtf(reverb_energy: np.ndarray, direct_energy: float, fs: float, n_gap: int) -> np.ndarray:
    omega = 2.0 * np.pi * np.asarray(_sti.MODULATION_FREQUENCIES_HZ)
    t_s = (np.arange(reverb_energy.size) + n_gap) / fs
    spectrum = direct_energy + np.exp(-1j * np.outer(omega, t_s)) @ reverb_energy
    return np.abs(spectrum) / (direct_energy + reverb_energy.sum())


def _realised_truth(reverb_energy: np.ndarray, direct_energy: float, fs: float, n_gap: int) -> dict[str, float]:
    """ISO 3382-1 values of a clean response: ``direct_energy`` at t = 0, ``reverb_energy[n]`` at (n + n_gap) / fs."""
    energy = np.concatenate([[direct_energy], np.zeros(n_gap - 1), reverb_energy])
    edc = np.cumsum(energy[::-1])[::-1]
    total = float(edc[0])
    edc_db = 10.0 * np.log10(np.maximum(edc, 1e-300) / total)
    t_s = np.arange(energy.size) / fs
    late_50 = float(edc[int(round(0.05 * fs))])
    late_80 = float(edc[int(round(0.08 * fs))])
    return {
        "edt_s": _regression_time_s(t_s, edc_db, 0.0, -10.0),
        "t20_s": _regression_time_s(t_s, edc_db, -5.0, -25.0),
        "t30_s": _regression_time_s(t_s, edc_db, -5.0, -35.0),
        "c50_db": 10.0 * math.log10((total - late_50) / late_50),
        "c80_db": 10.0 * math.log10((total - late_80) / late_80),
        "d50": (total - late_50) / total,
        "drr_db": 10.0 * math.log10(direct_energy / float(reverb_energy.sum())),
    }


def _regression_time_s(t_s: np.ndarray, edc_db: np.ndarray, top_db: float, bottom_db: float) -> float:
    start = 0 if top_db >= 0 else int(np.flatnonzero(edc_db <= top_db)[0])
    stop = int(np.flatnonzero(edc_db <= bottom_db)[0])
    slope = np.polyfit(t_s[start : stop + 1], edc_db[start : stop + 1], 1)[0]
    return float(-60.0 / slope)


def _truth(components: list[tuple[float, float]], direct_energy: float, gap_s: float) -> dict[str, float]:
    """ISO 3382-1 values of ``E_d delta(t) + sum_k (E_k / tau_k) exp(-(t - G) / tau_k)`` for ``t >= G``
    (continuous time; G the initial gap): ``EDC(t) = sum_k E_k exp(-max(t - G, 0) / tau_k)`` after the direct."""
    slowest_s = max(tau for _, tau in components)
    t_s = np.linspace(0.0, gap_s + slowest_s * LN_1E6 * 1.2, 40001)

    def late(t: np.ndarray | float) -> np.ndarray | float:
        delay_s = np.maximum(np.asarray(t) - gap_s, 0.0)
        return sum(energy * np.exp(-delay_s / tau) for energy, tau in components)

    reverb = float(late(0.0))
    total = direct_energy + reverb
    edc = late(t_s)
    edc_db = 10.0 * np.log10(np.maximum(edc, 1e-300) / total)
    edc_db[0] = 0.0  # the direct sound sits at t = 0
    late_50 = float(late(0.05))
    late_80 = float(late(0.08))
    return {
        "edt_s": _regression_time_s(t_s, edc_db, 0.0, -10.0),
        "t20_s": _regression_time_s(t_s, edc_db, -5.0, -25.0),
        "t30_s": _regression_time_s(t_s, edc_db, -5.0, -35.0),
        "c50_db": 10.0 * math.log10((total - late_50) / late_50),
        "c80_db": 10.0 * math.log10((total - late_80) / late_80),
        "d50": (total - late_50) / total,
        "drr_db": 10.0 * math.log10(direct_energy / reverb),
    }
