"""Speech Transmission Index from an impulse response: IEC 60268-16 indirect method (male speech).

The modulation transfer function of octave band ``k`` at modulation frequency ``F`` is the normalised
Fourier transform of the squared band impulse response (Schroeder 1981; IEC 60268-16, 6.1):

    m_k(F) = | sum_t h_k(t)**2 exp(-j 2 pi F t) | / sum_t h_k(t)**2

evaluated at the 14 modulation frequencies 0.63-12.5 Hz for the 7 octaves 125 Hz-8 kHz. Then, per
IEC 60268-16 Annex A: an ambient-noise factor ``1 / (1 + 10**(-SNR_k/10))``, the auditory masking by the band
below and the absolute reception threshold ``m' = m I_k / (I_k + I_am,k + I_rt,k)``, effective SNR
``10 log10(m' / (1 - m'))`` clipped to +-15 dB, transmission index ``TI = (SNR + 15) / 30``, band MTI as
the mean over the 14 frequencies, and

    STI = sum_k alpha_k MTI_k - sum_k beta_k sqrt(MTI_k MTI_k+1)

with the male weights (alpha, beta) and the redundancy correction (beta).

Assumptions (reported with every result, see :data:`DEFAULT_SPEECH_LEVEL_DBA`):
the speech level at the listener is 60 dB(A) ("normal" vocal effort) with the standard male spectrum,
and there is no ambient noise, so the value describes the room (reverberation, echoes) plus masking and
threshold at that level. The measurement's own background noise is not speech-situation noise: it is
removed from the impulse response (Lundeby truncation, noise subtraction and tail compensation, see
:mod:`sonalyze_acoustics.decay`) before the MTF is taken. Callers may pass other levels.

References
----------
IEC 60268-16:2020 (ed. 5; the weights, masking and threshold are as in ed. 4:2011), Sound system
equipment - Part 16: Objective rating of speech intelligibility by speech transmission index.
M. R. Schroeder, "Modulation transfer functions: definition and measurement", Acustica 49, 179-182 (1981).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

MODULATION_FREQUENCIES_HZ: Final = (0.63, 0.8, 1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0, 10.0, 12.5)
"""The 14 modulation frequencies in Hz (IEC 60268-16, one-third octaves 0.63-12.5 Hz)."""

STI_BANDS_HZ: Final = (125, 250, 500, 1000, 2000, 4000, 8000)
"""Octave bands of the STI, in Hz."""

MALE_ALPHA: Final = (0.085, 0.127, 0.230, 0.233, 0.309, 0.224, 0.173)
"""Male octave weighting factors alpha_k, 125 Hz-8 kHz (IEC 60268-16, Annex A)."""

MALE_BETA: Final = (0.085, 0.078, 0.065, 0.011, 0.047, 0.095)
"""Male redundancy factors beta_k between bands k and k+1 (IEC 60268-16, Annex A)."""

MALE_SPECTRUM_RE_DBA: Final = (2.9, 2.9, -0.8, -6.8, -12.8, -18.8, -24.8)
"""Octave-band levels of male speech in dB relative to its A-weighted level (IEC 60268-16, Annex A)."""

ABSOLUTE_RECEPTION_THRESHOLD_DB: Final = (46.0, 27.0, 12.0, 6.5, 7.5, 8.0, 12.0)
"""Absolute speech reception threshold per octave band in dB SPL (IEC 60268-16, Annex A)."""

DEFAULT_SPEECH_LEVEL_DBA: Final = 60.0
"""Assumed A-weighted speech level at the listener, dB(A): "normal" vocal effort (IEC 60268-16, Annex A)."""

MTF_BLOCK_S: Final = 0.001
"""Energy is summed in 1 ms blocks before the Fourier sum; the block's sinc loss at 12.5 Hz is 3e-4."""


@dataclass(frozen=True)
class StiAssumptions:
    """Levels the STI was computed with. ``noise_levels_db`` None means no ambient noise."""

    speech_level_dba: float
    noise_levels_db: tuple[float, ...] | None
    spectrum: str = "male"
    masking: bool = True
    reception_threshold: bool = True

    def as_dict(self) -> dict[str, object]:
        """JSON-safe description, including the per-band speech levels in dB SPL."""
        return {
            "speech_level_dba": self.speech_level_dba,
            "speech_band_levels_db": {
                str(band): round(self.speech_level_dba + offset, 1)
                for band, offset in zip(STI_BANDS_HZ, MALE_SPECTRUM_RE_DBA, strict=True)
            },
            "ambient_noise_levels_db": None if self.noise_levels_db is None else list(self.noise_levels_db),
            "spectrum": self.spectrum,
            "auditory_masking": self.masking,
            "absolute_reception_threshold": self.reception_threshold,
            "measurement_noise": "removed before the MTF (Lundeby truncation, noise subtraction, tail compensation)",
        }


@dataclass(frozen=True)
class StiResult:
    """STI with its intermediate values.

    Attributes
    ----------
    sti : float
        Speech transmission index, 0-1.
    mti : tuple of float
        Modulation transmission index per octave band 125 Hz-8 kHz.
    mtf : numpy.ndarray
        Corrected MTF, shape (7, 14).
    assumptions : StiAssumptions
    """

    sti: float
    mti: tuple[float, ...]
    mtf: np.ndarray
    assumptions: StiAssumptions


def modulation_transfer_function(
    band_energy: np.ndarray, sample_rate_hz: float, *, tail_energy: float = 0.0, tail_decay_per_s: float = 0.0
) -> np.ndarray:
    """MTF of one band from its squared impulse response, at the 14 modulation frequencies.

    Parameters
    ----------
    band_energy : numpy.ndarray
        1-D squared band impulse response ``h_k(t)**2`` (may contain small negative values after noise
        subtraction), starting at the direct sound, IR units squared. At least 1 sample.
    sample_rate_hz : float
        Sample rate in Hz, > 0.
    tail_energy : float
        Energy (sum over samples) of an exponential continuation after the last sample, >= 0.
    tail_decay_per_s : float
        Energy decay rate ``k`` in 1/s of that continuation ``E(t) ~ exp(-k t)``; > 0 when ``tail_energy > 0``.

    Returns
    -------
    numpy.ndarray
        Shape (14,), values in [0, 1].

    Notes
    -----
    ``m(F) = |sum_n e[n] exp(-j 2 pi F n/f_s) + E_tail exp(-j 2 pi F t_end) k / (k + j 2 pi F)| / (sum e + E_tail)``;
    the tail term is the Fourier transform of the exponential continuation from ``t_end`` on.
    """
    band_energy = np.asarray(band_energy, dtype=np.float64)
    if band_energy.ndim != 1 or band_energy.size < 1 or not np.all(np.isfinite(band_energy)):
        raise ValueError("band_energy must be a non-empty 1-D array of finite values")
    if not np.isfinite(sample_rate_hz) or sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    if not np.isfinite(tail_energy) or tail_energy < 0:
        raise ValueError(f"tail_energy must be >= 0, got {tail_energy}")
    if tail_energy > 0 and not (np.isfinite(tail_decay_per_s) and tail_decay_per_s > 0):
        raise ValueError(f"tail_decay_per_s must be > 0 when tail_energy > 0, got {tail_decay_per_s}")
    return band_mtfs(
        band_energy[None, :], float(sample_rate_hz), np.array([tail_energy]), np.array([tail_decay_per_s])
    )[0]


def speech_transmission_index(
    mtf: np.ndarray,
    *,
    speech_level_dba: float = DEFAULT_SPEECH_LEVEL_DBA,
    noise_levels_db: tuple[float, ...] | None = None,
    masking: bool = True,
    reception_threshold: bool = True,
) -> StiResult:
    """STI (male) from the uncorrected MTF of the 7 octave bands, with the IEC 60268-16 Annex A corrections.

    Parameters
    ----------
    mtf : numpy.ndarray
        Shape (7, 14): MTF of octave bands 125 Hz-8 kHz at :data:`MODULATION_FREQUENCIES_HZ`, each in [0, 1].
    speech_level_dba : float
        A-weighted speech level at the listener in dB(A), 20-120; band levels follow the male spectrum.
    noise_levels_db : tuple of 7 floats, optional
        Ambient noise octave-band levels in dB SPL; None for no ambient noise.
    masking : bool
        Apply the level-dependent auditory masking by the band below (IEC 60268-16 Annex A).
    reception_threshold : bool
        Apply the absolute speech reception threshold (IEC 60268-16 Annex A).

    Returns
    -------
    StiResult

    Notes
    -----
    ``I_k = 10**(L_k/10) + 10**(N_k/10)``, SNR factor ``1 / (1 + 10**((N_k - L_k)/10))``,
    ``I_am,k = I_k-1 10**(amdB(L_k-1)/10)`` with ``amdB(L) = 0.5 L - 65`` (L < 63), ``1.8 L - 146.9``
    (63 <= L < 67), ``0.5 L - 59.8`` (67 <= L < 100), ``-10`` (L >= 100), ``I_rt,k = 10**(A_k/10)``.
    """
    mtf = np.asarray(mtf, dtype=np.float64)
    if mtf.shape != (7, 14):
        raise ValueError(f"mtf must have shape (7, 14), got {mtf.shape}")
    if not np.all(np.isfinite(mtf)) or np.any(mtf < 0) or np.any(mtf > 1 + 1e-9):
        raise ValueError("mtf values must be finite and within [0, 1]")
    if not np.isfinite(speech_level_dba) or not 20.0 <= speech_level_dba <= 120.0:
        raise ValueError(f"speech_level_dba must be between 20 and 120 dB(A), got {speech_level_dba}")
    if noise_levels_db is not None:
        noise_levels_db = tuple(float(level) for level in noise_levels_db)
        if len(noise_levels_db) != 7 or not all(np.isfinite(level) for level in noise_levels_db):
            raise ValueError("noise_levels_db must have 7 finite octave-band levels in dB SPL")
    assumptions = StiAssumptions(
        speech_level_dba=float(speech_level_dba),
        noise_levels_db=noise_levels_db,
        masking=masking,
        reception_threshold=reception_threshold,
    )
    corrected = _corrected_mtf(np.clip(mtf, 0.0, 1.0), assumptions)
    mti = _mti(corrected)
    return StiResult(sti=_sti_from_mti(mti), mti=tuple(float(v) for v in mti), mtf=corrected, assumptions=assumptions)


def sti_from_mti(mti: np.ndarray) -> float:
    """STI from the 7 band MTIs: ``sum alpha_k MTI_k - sum beta_k sqrt(MTI_k MTI_k+1)``, capped at 1."""
    mti = np.asarray(mti, dtype=np.float64)
    if mti.shape != (7,) or not np.all(np.isfinite(mti)) or np.any(mti < 0) or np.any(mti > 1):
        raise ValueError("mti must have 7 finite values within [0, 1]")
    return _sti_from_mti(mti)


# ---------------------------------------------------------------------------------------------------------
# private helpers


def band_mtfs(
    energy: np.ndarray, sample_rate_hz: float, tail_energy: np.ndarray, tail_decay_per_s: np.ndarray
) -> np.ndarray:
    """Vectorised MTF for ``energy`` of shape (n_bands, n_samples), one tail per band; returns (n_bands, 14).

    Inputs are used as given: `modulation_transfer_function` is the checked form for one band.
    """
    n_block = max(int(round(MTF_BLOCK_S * sample_rate_hz)), 1)
    n_bands, n_samples = energy.shape
    n_blocks = -(-n_samples // n_block)
    padded = np.zeros((n_bands, n_blocks * n_block))
    padded[:, :n_samples] = energy
    block_energy = padded.reshape(n_bands, n_blocks, n_block).sum(axis=2)
    block_centre_s = ((np.arange(n_blocks) + 0.5) * n_block - 0.5) / sample_rate_hz
    omega = 2.0 * np.pi * np.asarray(MODULATION_FREQUENCIES_HZ)
    phasors = np.exp(-1j * np.outer(block_centre_s, omega))  # (n_blocks, 14)
    spectrum = block_energy @ phasors
    end_s = n_samples / sample_rate_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(
            tail_energy[:, None] > 0,
            tail_energy[:, None]
            * np.exp(-1j * omega[None, :] * end_s)
            * tail_decay_per_s[:, None]
            / (tail_decay_per_s[:, None] + 1j * omega[None, :]),
            0.0,
        )
    total = block_energy.sum(axis=1) + tail_energy
    with np.errstate(divide="ignore", invalid="ignore"):
        mtf = np.abs(spectrum + tail) / total[:, None]
    return np.clip(np.nan_to_num(mtf, nan=0.0), 0.0, 1.0)


def _masking_db(level_db: np.ndarray) -> np.ndarray:
    return np.select(
        [level_db < 63.0, level_db < 67.0, level_db < 100.0],
        [0.5 * level_db - 65.0, 1.8 * level_db - 146.9, 0.5 * level_db - 59.8],
        default=-10.0,
    )


def _corrected_mtf(mtf: np.ndarray, assumptions: StiAssumptions) -> np.ndarray:
    speech_db = assumptions.speech_level_dba + np.asarray(MALE_SPECTRUM_RE_DBA)
    speech_intensity = 10.0 ** (speech_db / 10.0)
    if assumptions.noise_levels_db is None:
        noise_intensity = np.zeros(7)
    else:
        noise_intensity = 10.0 ** (np.asarray(assumptions.noise_levels_db) / 10.0)
    intensity = speech_intensity + noise_intensity
    corrected = mtf * (speech_intensity / intensity)[:, None]
    masking_intensity = np.zeros(7)
    if assumptions.masking:
        band_db = 10.0 * np.log10(intensity)
        masking_intensity[1:] = intensity[:-1] * 10.0 ** (_masking_db(band_db[:-1]) / 10.0)
    threshold_intensity = np.zeros(7)
    if assumptions.reception_threshold:
        threshold_intensity = 10.0 ** (np.asarray(ABSOLUTE_RECEPTION_THRESHOLD_DB) / 10.0)
    corrected = corrected * (intensity / (intensity + masking_intensity + threshold_intensity))[:, None]
    return np.clip(corrected, 0.0, 1.0)


def _mti(mtf: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        snr_db = 10.0 * np.log10(mtf / np.maximum(1.0 - mtf, 1e-300))
    ti = (np.clip(snr_db, -15.0, 15.0) + 15.0) / 30.0
    return ti.mean(axis=-1)


def _sti_from_mti(mti: np.ndarray) -> float:
    alpha = np.asarray(MALE_ALPHA)
    beta = np.asarray(MALE_BETA)
    sti = float(np.dot(alpha, mti) - np.dot(beta, np.sqrt(mti[:-1] * mti[1:])))
    return float(np.clip(sti, 0.0, 1.0))
