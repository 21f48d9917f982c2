"""Reference cases with known truth: synthetic rooms taken through a simulated phone recording.

A case designs an impulse response whose ISO 3382-1 values are known analytically, then simulates
what a microphone records when the service's own signal is played through it: convolution, a delay,
clock drift, another sample rate, additive noise. The accuracy tests and ``bench/analysis.py`` feed the
result through the real analysis and compare with the truth.

The impulse response (at the signal's rate):

- a direct sound at ``DIRECT_DELAY_S``: a unit impulse (one sample), the direct sound of an ideal point
  source. The measurement band-limits it, as it does a real one: the deconvolution returns the zero-phase
  pulse of its band mask (the sweep's 50 Hz-20 kHz with raised-cosine ends), which
  :func:`sonalyze_acoustics.parameters.room_parameters` is told about (``band_limits_hz``). An earlier design
  band-limited the impulse itself to 88 Hz-11.3 kHz, edges inside the 125 Hz and 8 kHz octaves: no
  measurement delivers that, and its ~88 Hz ringing outlasted any direct window (DRR -2 to -4 dB at 125 Hz);
- from ``REVERB_ONSET_S`` (2.5 ms, a realistic initial time delay gap: the first reflection of a room
  arrives a few ms after the direct sound, as in :mod:`sonalyze_acoustics.synthetic`) after it, per octave
  band one constant-envelope FM tone sweeping the band's
  inner half octave, decaying exponentially with the band's designed T60 (energy ``exp(-13.8 t / T60)``),
  scaled so the band's direct-to-reverberant ratio is the designed ``drr_db``.

A constant-envelope tone (not noise) keeps the energy in every time window deterministic, so C50, C80
and EDT of the design are exact and not a random draw; the inner half octave keeps each band's
energy where one octave filter sees all of it and its neighbours little.

Truth is computed from the design's energy model, sampled at the signal's rate: per band the direct
energy (the pulse's energy in the band) at the direct sound's sample and the exponential reverberant
energy from the onset on; broadband is the sum of the bands. Decay times by linear regression of the
Schroeder curve over ISO 3382-1's ranges; STI with the lib's IEC 60268-16 corrections on the MTF of
the model's energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sp_signal

from sonalyze_acoustics.bands import OCTAVE_BANDS_HZ, band_edges_hz

OCTAVES_HZ: Final = OCTAVE_BANDS_HZ
DIRECT_DELAY_S: Final = 0.02
REVERB_ONSET_S: Final = 0.0025
"""Initial time delay gap: the reverberation starts this long after the direct sound (first reflection)."""
T60_PROFILE: Final = {125: 1.25, 250: 1.15, 500: 1.05, 1000: 1.0, 2000: 0.92, 4000: 0.82, 8000: 0.7}
"""Relative T60 per band of a typical room (longer in the bass), multiplied by a case's ``t60_1k_s``."""
RISE_BANDWIDTHS: Final = 1.0
"""The reverberation of a band rises over this many periods of the band's bandwidth (1/B seconds)."""
ENERGY_DECAY_PER_T60: Final = 6.0 * np.log(10.0)  # 60 dB of energy = exp(-13.8)


@dataclass(frozen=True)
class ReferenceCase:
    """One synthetic room and one simulated recording of it."""

    name: str
    t60_1k_s: float = 1.0
    drr_db: float = 0.0
    pnr_db: float = 60.0
    """Peak of the recording over the RMS of its white noise, dB."""
    drift_ppm: float = 0.0
    recording_rate_hz: int = 44100
    delay_s: float = 0.8
    """Silence recorded before the signal starts."""
    seed: int = 1

    @property
    def t60_s_by_band(self) -> dict[int, float]:
        return {band: self.t60_1k_s * ratio for band, ratio in T60_PROFILE.items()}


@dataclass
class Design:
    """A designed impulse response and the energy model its truth comes from."""

    ir: np.ndarray
    sample_rate_hz: int
    direct_index: int
    onset_index: int
    direct_energy: dict[int, float]
    reverb_energy: dict[int, float]
    t60_s: dict[int, float]
    truth: dict[str, Any] = field(default_factory=dict)


def design_room(case: ReferenceCase, sample_rate_hz: int = 48000) -> Design:
    """The case's impulse response (1-D, ``sample_rate_hz``) with its analytic truth."""
    fs = float(sample_rate_hz)
    t60_s = case.t60_s_by_band
    # long enough for a 100 dB decay of the longest band, so the end holds no audible truncation
    length_s = DIRECT_DELAY_S + REVERB_ONSET_S + 1.7 * max(t60_s.values()) + 0.05
    n_samples = int(length_s * fs)
    direct_index = int(round(DIRECT_DELAY_S * fs))
    onset_index = direct_index + int(round(REVERB_ONSET_S * fs))

    direct = _direct_pulse(n_samples, fs, direct_index)
    direct_spectrum = np.abs(sp_fft.rfft(direct)) ** 2
    freqs_hz = sp_fft.rfftfreq(n_samples, 1.0 / fs)
    rng = np.random.default_rng(case.seed)
    ir = direct.copy()
    direct_energy: dict[int, float] = {}
    reverb_energy: dict[int, float] = {}
    for band in OCTAVES_HZ:
        low_hz, high_hz = band_edges_hz(band)
        in_band = (freqs_hz >= low_hz) & (freqs_hz < high_hz)
        # Parseval for the rfft: interior bins count twice
        energy_d = 2.0 * float(direct_spectrum[in_band].sum()) / n_samples
        energy_r = energy_d * 10.0 ** (-case.drr_db / 10.0)
        analytic_tone = _decaying_fm_tone(n_samples - onset_index, fs, band, t60_s[band], rng)
        # start phase that makes the tone orthogonal to the direct sound within the band, so the band's
        # energy is the sum of the two with no cross term (which would depend on a random phase)
        band_direct = sp_fft.irfft(np.where(in_band, sp_fft.rfft(direct), 0.0), n_samples)[onset_index:]
        overlap = complex(np.dot(band_direct, analytic_tone))
        phase = np.pi / 2 - np.angle(overlap) if abs(overlap) > 0 else 0.0
        tone = np.real(analytic_tone * np.exp(1j * phase))
        tone *= np.sqrt(energy_r / float(np.sum(tone**2)))
        ir[onset_index:] += tone
        direct_energy[band] = energy_d
        reverb_energy[band] = energy_r
    design = Design(
        ir=ir,
        sample_rate_hz=int(sample_rate_hz),
        direct_index=direct_index,
        onset_index=onset_index,
        direct_energy=direct_energy,
        reverb_energy=reverb_energy,
        t60_s=t60_s,
    )
    design.truth = truth_from_model(design)
    return design


def simulate_recording(signal: np.ndarray, signal_rate_hz: int, design: Design, case: ReferenceCase) -> np.ndarray:
    """What the phone records: signal * IR, delayed, on a drifting clock at another rate, plus noise.

    The microphone's clock runs ``drift_ppm`` fast: it takes ``recording_rate_hz * (1 + drift)``
    samples per second of the speaker's clock. Returns float64 samples peaking at 0.5.
    """
    wet = sp_signal.fftconvolve(signal, design.ir)
    n_delay = int(round(case.delay_s * signal_rate_hz))
    wet = np.concatenate([np.zeros(n_delay), wet, np.zeros(int(0.3 * signal_rate_hz))])
    n_in = sp_fft.next_fast_len(len(wet), real=True)
    wet = np.concatenate([wet, np.zeros(n_in - len(wet))])
    n_out = int(round(n_in * case.recording_rate_hz * (1.0 + case.drift_ppm * 1e-6) / signal_rate_hz))
    recorded = sp_signal.resample(wet, n_out)
    recorded *= 0.5 / float(np.max(np.abs(recorded)))
    rng = np.random.default_rng(case.seed + 1000)
    noise_rms = 0.5 * 10.0 ** (-case.pnr_db / 20.0)
    return recorded + rng.normal(0.0, noise_rms, len(recorded))


def truth_from_model(design: Design) -> dict[str, Any]:
    """ISO 3382-1 values and STI of the design's energy model: ``{"broadband": {...}, "bands": {...}}``."""
    from sonalyze_acoustics.sti import modulation_transfer_function, speech_transmission_index

    fs = float(design.sample_rate_hz)
    n_gap = design.onset_index - design.direct_index
    n_samples = len(design.ir) - design.direct_index + int(2 * max(design.t60_s.values()) * fs)
    energies: dict[int, np.ndarray] = {}
    bands: dict[str, dict[str, float]] = {}
    for band in OCTAVES_HZ:
        energy = _model_energy(
            n_samples, fs, n_gap, design.direct_energy[band], design.reverb_energy[band], band, design.t60_s[band]
        )
        energies[band] = energy
        bands[str(band)] = _values_from_energy(energy, fs, design.direct_energy[band], design.reverb_energy[band])
    total = np.sum(list(energies.values()), axis=0)
    broadband = _values_from_energy(total, fs, sum(design.direct_energy.values()), sum(design.reverb_energy.values()))
    mtf = np.array([modulation_transfer_function(energies[band], fs) for band in OCTAVES_HZ])
    broadband["sti"] = float(speech_transmission_index(mtf).sti)
    return {"broadband": broadband, "bands": bands}


def _values_from_energy(energy: np.ndarray, fs: float, direct_energy: float, reverb_energy: float) -> dict[str, float]:
    edc = np.cumsum(energy[::-1])[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-300))
    t_s = np.arange(len(energy)) / fs
    n50, n80 = int(round(0.05 * fs)), int(round(0.08 * fs))
    total = float(energy.sum())
    t20 = _decay_time(t_s, edc_db, -5.0, -25.0)
    t30 = _decay_time(t_s, edc_db, -5.0, -35.0)
    return {
        "edt_s": _decay_time(t_s, edc_db, 0.0, -10.0),
        "t20_s": t20,
        "t30_s": t30,
        "rt60_s": t30,
        "c50_db": float(10 * np.log10(energy[:n50].sum() / energy[n50:].sum())),
        "c80_db": float(10 * np.log10(energy[:n80].sum() / energy[n80:].sum())),
        "d50": float(energy[:n50].sum() / total),
        "drr_db": float(10 * np.log10(direct_energy / reverb_energy)),
    }


def _decay_time(t_s: np.ndarray, edc_db: np.ndarray, upper_db: float, lower_db: float) -> float:
    """-60 / slope of the least-squares line through the curve between ``upper_db`` and ``lower_db``."""
    selected = (edc_db <= upper_db) & (edc_db >= lower_db)
    slope, _ = np.polyfit(t_s[selected], edc_db[selected], 1)
    return float(-60.0 / slope)


def _model_energy(
    n_samples: int, fs: float, n_gap: int, direct: float, reverb: float, band: int, t60_s: float
) -> np.ndarray:
    """Energy per sample from the direct sound on: the direct energy, then the reverberation's envelope squared."""
    envelope = reverb_envelope(n_samples - n_gap, fs, band, t60_s) ** 2
    energy = np.zeros(n_samples)
    energy[0] = direct
    energy[n_gap:] = reverb * envelope / envelope.sum()
    return energy


def _direct_pulse(n_samples: int, fs: float, index: int) -> np.ndarray:
    """The direct sound of an ideal source: a unit impulse at ``index`` (the measurement band-limits it)."""
    pulse = np.zeros(n_samples)
    pulse[index] = 1.0
    return pulse


def reverb_envelope(n_samples: int, fs: float, band: int, t60_s: float) -> np.ndarray:
    """Amplitude envelope of a band's reverberation: a raised-cosine rise over ``1 / bandwidth``, then
    ``exp(-6.9 t / T60)`` (energy falls 60 dB per T60). The rise keeps the onset's spectrum inside the band."""
    low_hz, high_hz = band_edges_hz(band)
    t_s = np.arange(n_samples) / fs
    n_rise = max(1, int(round(RISE_BANDWIDTHS / (high_hz - low_hz) * fs)))
    rise = np.ones(n_samples)
    rise[:n_rise] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_rise) + 0.5) / n_rise)
    return rise * np.exp(-0.5 * ENERGY_DECAY_PER_T60 * t_s / t60_s)


def _decaying_fm_tone(n_samples: int, fs: float, band: int, t60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Complex (analytic) tone gliding log-triangularly over the band's inner half octave, with the band's envelope."""
    centre_hz = 1000.0 * 10.0 ** (0.3 * round(np.log10(band / 1000.0) / 0.3))
    t_s = np.arange(n_samples) / fs
    period_s = 12.0 / centre_hz
    phase0 = rng.uniform(0, 1)
    triangle = 2.0 * np.abs(2.0 * (((t_s / period_s) + phase0) % 1.0) - 1.0) - 1.0  # -1..1
    inst_hz = centre_hz * 2.0 ** (0.25 * triangle)
    phase = 2 * np.pi * np.cumsum(inst_hz) / fs
    return np.exp(1j * phase) * reverb_envelope(n_samples, fs, band, t60_s)
