"""The hybrid method's join: exact image sources early, the ray-traced tail late, with no energy step.

Why our own join: pyroomacoustics' built-in hybrid attenuates every image source by ``(1 - s)`` per
reflection for scattering ``s`` and lets rays supply the rest, but its rays both continue with their full
energy and send the scattered share to the receiver ("diffuse rain"), so the ray part is ``1 + s`` too loud
and counts order ``max_order`` twice. The measured result: EDT 40 % short and C50 5 dB high in a 5 x 4 x 2.5 m
room, T30 33 % long at absorption 0.3 (issue 15).

Here the two parts are computed separately and joined at a transition time ``t_x``:

- the image sources (specular, unattenuated by scattering) up to an order ``K`` that is complete until
  ``t_x`` (every reflection arriving before ``t_x`` is of order at most ``K``). ``t_x`` follows the surfaces'
  scattering ``s`` (`early_s`): the image sources carry the response while most of a reflection's energy is
  still specular, ``(1 - s) ** n >= 1/2`` after ``n`` reflections; without scattering that is the whole decay,
  as far as their order can reach within the cost budget; with scattering at least `EARLY_S` after the direct
  sound, or a sixth of the Eyring RT60 (the first 10 dB of the decay) if that is shorter;
- after ``t_x``, white noise shaped per octave band by the ray tracer's energy histogram (all orders,
  scattering included), smoothed so the rays' counting noise does not reach the response, and scaled so its
  energy over the last half of the span between the direct sound and ``t_x`` equals the image sources' there.

Energy is therefore continuous at ``t_x``, the early response (direct sound, discrete reflections, C50,
most of EDT) is the image-source model's, and the decay after ``t_x`` is the ray tracer's, which models
scattering (the diffuse field Eyring assumes). This is the classic ISM/RT hybrid with the late part
synthesised from ray statistics and matched in energy at the transition (Vorländer 1989, JASA 86, 172-178;
Vorländer 2008, *Auralization*, sections 11.4-11.5). Scattering of the first ``K`` reflections is neglected.
The same rule for the order and the transition holds for shoebox and polygon rooms, and both trace the same rays
(`sonalyze_simulation.acoustics.pyroom`), so a rectangle entered as a polygon gives the shoebox's response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

EARLY_S: Final = 0.08
"""The image sources carry the response up to this long after the direct sound (C80's early part) ..."""

EARLY_FRACTION_OF_RT: Final = 1.0 / 6.0
"""... or up to a sixth of the mid-band Eyring RT60 if that is shorter: the decay's first 10 dB (EDT's
range). Later than that, the specular image sources (which ignore scattering) would set the slope of T20/T30
(measured: T30 +36 % against Eyring at absorption 0.5, scattering 0.3, with 80 ms); shorter, the rays' counting
noise would set C50 and EDT."""

SPECULAR_SHARE: Final = 0.5
"""The image sources carry the response while reflections keep at least this share of their energy specular:
``n <= ln(1/2) / ln(1 - s)`` reflections (s = 0.1: 6.6, s = 0.3: 1.9), ``n`` mean free paths after the direct
sound. Where reflections stay specular the image sources are the exact model, and the rays only add the
statistical tail; where they scatter, image sources beyond that order would set a specular decay (above).
At s >= 0.3 this is never later than the rule above (the first 10 dB of the decay for absorption < 0.68)."""

SPECULAR_COVER_FRACTION_OF_RT: Final = 2.0
"""Without scattering the image sources carry the response up to twice the Eyring RT60 after the direct sound
(a specular box decays up to ~75 % slower than Eyring, and the response is cut 80 dB down), or as far as their
order reaches within the cost budget: the rays' tail then only adds the energy their order misses. Measured
against image sources of high order (``bench/simulation_grid.py --positions``: 3 shoeboxes, 2 positions each,
absorption 0.05-0.5, scattering 0, worst mid band): handing over after 80 ms / RT/6 as with scattering, one
position's EDT was up to 36 % and C80 4.7 dB off; up to a third of RT60, C80 still 4.7 dB (absorption 0.5:
C80's late part was the tail); one RT60, 4.3 % and 1.3 dB; two, 4.3 % and 0.1 dB (the 4.3 % at absorption
0.05, where order 100 is complete for only the first 0.7 s)."""

MIN_EARLY_S: Final = 0.015
"""Below this coverage the join falls back to the earliest complete time it can have (a huge hall with a
tight cost budget); the rays then carry more of the early response."""

MATCH_FRACTION: Final = 0.5
"""The energies are matched over the last half of the image-source part (between the direct sound and
``t_x``). The whole part was used before: its energy is mostly the first few reflections off the walls
nearest to source and microphone, a handful of specular arrivals that say little about the diffuse level,
and the tail came out too loud (18 shoebox cells without scattering: mean C80 -0.9 dB, EDT +4 % against image
sources of order 60; 12 cells with scattering 0.3: EDT +9 %, C50/C80 -0.9 dB against the ray tracer alone).
Over the last half: C80 -0.4 dB, EDT -0.5 %; and EDT +1.5 %, C +0.2 dB (0.4 does as well, 0.6 and 1.0 not)."""

DIRECT_GUARD_S: Final = 0.003
"""The match window starts this long after the direct sound, past its fractional-delay filter (81 taps,
under 1 ms at 48 kHz, 2.5 ms at 16 kHz): the direct sound is the image sources' exactly and the rays' as a
lucky hit of the receiver sphere, so it must not set the gain."""

FIT_RANGE_DB: Final = 20.0
"""The slope that continues a band's decay beyond the rays' last hits is fitted over its last 20 dB."""

SMOOTHING_FRACTION: Final = 0.15
"""The rays' histogram is averaged over +-15 % of each bin's time (see `_smoothed`)."""

TAIL_DB: Final = 90.0
"""The synthesized tail runs until its slowest band has fallen this far (the response is cut 80 dB down)."""

MAX_TAIL_S: Final = 10.0
"""... and never beyond this (the ray tracer's own time limit)."""

MIN_FIT_BINS: Final = 8
"""A band's fit needs at least this many non-empty 4 ms bins."""

CROSSFADE_S: Final = 0.002
"""Raised-cosine crossfade at ``t_x`` (so no click, and no spectral artefact from a hard cut)."""

MAX_ORDER: Final = 30
"""Highest image-source order the hybrid asks for to cover the first 10 dB (a shoebox 1 m high reaches 50 ms
at order 18); the node budget below caps it further, in every room (the transition was measured so)."""

LATTICE_MAX_ORDER: Final = 100
"""Highest order when the image sources carry a specular response longer than that, on the shoebox lattice
only (1.3 million images, about 2.5 s for one pair at 16 kHz; a 2.5 m high room is complete for 0.73 s): the
request's own limit; planning lowers it to keep within half the cost budget."""

POLYGON_NODE_BUDGET: Final = 2.0e6
"""Nodes of the general image-source search allowed for one source (6 surfaces: order 8, 0.03 s measured;
the search grows as ``(n_surfaces - 1) ** order``)."""


def search_nodes(order: int, n_surfaces: int) -> float:
    """Nodes of pyroomacoustics' general (polygon) image-source search up to ``order``."""
    branching = max(n_surfaces - 1, 1)
    return float(sum(n_surfaces * branching ** (k - 1) for k in range(1, order + 1)))


def specular_orders(scattering: float) -> float:
    """Reflections after which a path's specular share ``(1 - s) ** n`` falls to `SPECULAR_SHARE` (inf at s = 0)."""
    if not 0.0 <= scattering <= 1.0:
        raise ValueError(f"scattering must lie in [0, 1], got {scattering}")
    if scattering == 0.0:
        return math.inf
    if scattering == 1.0:
        return 0.0
    return math.log(SPECULAR_SHARE) / math.log1p(-scattering)


def early_s(
    eyring_mid_s: float,
    scattering: float = 1.0,
    mean_free_path_m: float = 0.0,
    speed_of_sound_m_s: float = 343.0,
) -> float:
    """How long after the direct sound the image sources carry the hybrid's response.

    ``max(min(EARLY_S, RT/6), min(n_s * l / c, RT))``: at least the first 10 dB of the Eyring decay (or
    `EARLY_S`), and beyond that while reflections stay mostly specular, ``n_s`` = `specular_orders` mean free
    paths ``l`` (up to the whole RT60 without scattering: `SPECULAR_COVER_FRACTION_OF_RT`). ``scattering`` is
    the surfaces' mean mid-band scattering coefficient; the defaults give the first term alone.
    """
    base = max(MIN_EARLY_S, min(EARLY_S, EARLY_FRACTION_OF_RT * eyring_mid_s))
    specular = specular_orders(scattering) * mean_free_path_m / speed_of_sound_m_s if mean_free_path_m > 0 else 0.0
    return max(base, min(specular, SPECULAR_COVER_FRACTION_OF_RT * eyring_mid_s))


def hybrid_order(
    shortest_extent_m: float,
    direct_max_m: float,
    n_surfaces: int,
    speed_of_sound_m_s: float,
    early: float = EARLY_S,
    on_lattice: bool = False,
) -> int:
    """Image-source order for the hybrid: enough to be complete ``early`` s after the latest direct sound.

    A reflection path of order ``K`` is at least about ``(K - 1)`` times the room's shortest extent long, so
    ``K = 1 + (d + c * early) / L_min`` reaches the target. Bounded by `LATTICE_MAX_ORDER` on the shoebox lattice
    (a shoebox, or a rectangle along the axes entered as a polygon: the same images, so the same order), else by
    `MAX_ORDER` and `POLYGON_NODE_BUDGET` (the general search is exponential in the order).
    """
    if shortest_extent_m <= 0:
        raise ValueError(f"shortest_extent_m must be > 0, got {shortest_extent_m}")
    wanted = 1 + math.ceil((direct_max_m + speed_of_sound_m_s * early) / shortest_extent_m)
    order = max(2, min(wanted, LATTICE_MAX_ORDER if on_lattice else MAX_ORDER))
    while not on_lattice and order > 2 and search_nodes(order, n_surfaces) > POLYGON_NODE_BUDGET:
        order -= 1
    return order


def transition_s(
    image_distances_m: NDArray[np.float64],
    image_orders: NDArray[np.int64],
    order: int,
    direct_m: float,
    speed_of_sound_m_s: float,
    early: float = EARLY_S,
) -> float:
    """When the image sources stop being complete for one microphone, capped at ``early`` after the direct.

    The nearest image of the highest order ``K`` bounds the first arrival of order ``K + 1`` from below (one
    more reflection only lengthens a path): up to there, every arrival is in the image-source model.
    """
    highest = image_distances_m[image_orders == order]
    complete_m = float(highest.min()) if highest.size else math.inf
    direct_s = direct_m / speed_of_sound_m_s
    return max(min(complete_m / speed_of_sound_m_s, direct_s + early), direct_s + min(MIN_EARLY_S, early))


@dataclass(frozen=True, slots=True)
class TailModel:
    """Per band (the ray tracer's octave bands): the smoothed energy envelope in dB at ``times_s``, and the
    slope (dB/s) that continues it after its last point."""

    centres_hz: tuple[float, ...]
    times_s: NDArray[np.float64]
    envelope_db: NDArray[np.float64]
    slope_db_per_s: tuple[float, ...]


def _smoothed(energy: NDArray[np.float64], bin_s: float) -> NDArray[np.float64]:
    """Moving average whose half-width grows with time (15 % of the bin index, at least 2 bins), taken on the
    energy relative to a straight-line (exponential) fit and multiplied back.

    Early bins hold few ray hits and the decay changes fast; late bins change slowly, so a wider average
    removes the rays' counting noise. Averaging the exponential itself would lift the curve by more the wider
    the window (3 dB at 200 ms for a 0.2 s decay: T30 7 % long); its ratio to the fitted line is flat, so the
    average keeps only the deviations (a curved or double-slope decay) at their own time scale.
    """
    times = (np.arange(energy.size) + 0.5) * bin_s
    positive = energy > 0
    trend_db = np.zeros(energy.size)
    if np.count_nonzero(positive) >= 2:
        slope, intercept = np.polyfit(times[positive], 10.0 * np.log10(energy[positive]), 1)
        trend_db = intercept + slope * times
    trend = 10.0 ** (trend_db / 10.0)
    ratio = energy / trend
    cumulative = np.concatenate([[0.0], np.cumsum(ratio)])
    index = np.arange(energy.size)
    half = np.maximum(2, np.round(SMOOTHING_FRACTION * index)).astype(np.intp)
    low = np.clip(index - half, 0, energy.size)
    high = np.clip(index + half + 1, 0, energy.size)
    return (cumulative[high] - cumulative[low]) / (high - low) * trend


def fit_tail(
    histogram: NDArray[np.float64],
    bin_s: float,
    centres_hz: tuple[float, ...],
    start_s: float,
    air_db_per_s: tuple[float, ...] | None = None,
) -> TailModel | None:
    """The rays' energy decay per band from ``start_s`` on, smoothed, with a slope to continue it.

    ``air_db_per_s``: the air's attenuation per band, which pyroomacoustics applies when it turns the
    histogram into a response (not in the histogram itself), added here to the envelope.

    The slope is a straight-line fit (in dB) over the last :data:`FIT_RANGE_DB` of each band's smoothed
    decay. None when a band has fewer than :data:`MIN_FIT_BINS` non-empty bins or does not decay.
    """
    energy = np.asarray(histogram, dtype=np.float64)
    if energy.ndim == 3:  # (directions, bands, bins)
        energy = energy.sum(axis=0)
    times = (np.arange(energy.shape[1], dtype=np.float64) + 0.5) * bin_s
    first = int(np.searchsorted(times, start_s))
    envelopes: list[NDArray[np.float64]] = []
    slopes: list[float] = []
    last_bin = energy.shape[1]
    for band in energy:
        if np.count_nonzero(band[first:] > 0) < MIN_FIT_BINS:
            return None
        smooth = _smoothed(band, bin_s)
        positive = np.flatnonzero(smooth > 0)
        last_bin = min(last_bin, int(positive[-1]) + 1)
        db = 10.0 * np.log10(np.maximum(smooth, 1e-300))
        if air_db_per_s is not None:
            db = db - air_db_per_s[len(envelopes)] * times
        envelopes.append(db)
    for db in envelopes:
        end = last_bin - int(np.ceil(SMOOTHING_FRACTION * last_bin))  # the last bins average over fewer hits
        end = max(end, first + MIN_FIT_BINS)
        window = slice(first, end)
        top = float(np.max(db[window]))
        use = np.arange(first, end)[db[window] <= db[end - 1] + FIT_RANGE_DB]
        use = use[db[use] <= top]
        if use.size < MIN_FIT_BINS // 2:
            use = np.arange(first, end)
        slope, _ = np.polyfit(times[use], db[use], 1)
        if slope >= 0:
            return None
        slopes.append(float(slope))
    stacked = np.stack([db[:last_bin] for db in envelopes]).astype(np.float64)
    end = max(last_bin - int(np.ceil(SMOOTHING_FRACTION * last_bin)), first + MIN_FIT_BINS)
    return TailModel(
        tuple(float(c) for c in centres_hz), times[:end].astype(np.float64), stacked[:, :end], tuple(slopes)
    )


def synthesize_tail(
    model: TailModel, n_samples: int, sample_rate_hz: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """White Gaussian noise shaped per octave band by the rays' envelopes (continued by their slopes)."""
    n_fft = int(2 ** math.ceil(math.log2(max(n_samples, 2))))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    centres = np.asarray(model.centres_hz)
    edges = np.concatenate([[0.0], np.sqrt(centres[:-1] * centres[1:]), [sample_rate_hz / 2.0 + 1.0]])
    t = np.arange(n_samples) / sample_rate_hz
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    out = np.zeros(n_samples)
    t_end = float(model.times_s[-1])
    for b in range(centres.size):
        mask = (freqs >= edges[b]) & (freqs < edges[b + 1])
        if not np.any(mask):
            continue
        # white noise through the band: its power is the band's share of the spectrum, as in the rays'
        # own responses (a histogram value is energy per unit bandwidth, not per band)
        band = np.fft.irfft(np.where(mask, spectrum, 0.0), n_fft)[:n_samples]
        envelope_db = np.interp(t, model.times_s, model.envelope_db[b])
        late = t > t_end
        envelope_db[late] = model.envelope_db[b][-1] + model.slope_db_per_s[b] * (t[late] - t_end)
        out += band * 10.0 ** (envelope_db / 20.0)
    return out


def join(
    ism_ir: NDArray[np.float64],
    tail_ir: NDArray[np.float64],
    direct_index: int,
    transition_index: int,
    sample_rate_hz: float,
) -> tuple[NDArray[np.float64], float]:
    """The hybrid response, and the gain (dB) applied to the tail.

    ``ism_ir`` and ``tail_ir`` share their time axis. The tail's energy over the last half of the span from
    the end of the direct sound to ``t_x`` is matched to the image sources' there (`MATCH_FRACTION`). One gain for all bands: a 10 ms window of a
    specular response swings by +-5 dB per octave band (the image lattice sends its reflections in
    clusters), so band-wise gains were noise (measured: -8 to +1 dB between neighbouring bands); the tail's
    spectrum comes from the ray tracer's fit instead.
    """
    n = max(ism_ir.size, tail_ir.size)
    ism = np.pad(ism_ir, (0, n - ism_ir.size))
    tail = np.pad(tail_ir, (0, n - tail_ir.size))
    transition_index = int(min(max(transition_index, direct_index + 1), n - 1))
    after_direct = direct_index + int(round(DIRECT_GUARD_S * sample_rate_hz))
    match_start = int(transition_index - MATCH_FRACTION * (transition_index - after_direct))
    match_start = min(max(match_start, after_direct), transition_index - 1)
    ism_energy = float(np.sum(ism[match_start:transition_index] ** 2))
    tail_energy = float(np.sum(tail[match_start:transition_index] ** 2))
    gain_db = 10.0 * math.log10(ism_energy / tail_energy) if ism_energy > 0 and tail_energy > 0 else 0.0

    fade = max(int(round(CROSSFADE_S * sample_rate_hz)), 1)
    fade_start = max(transition_index - fade, direct_index + 1)
    ramp = np.zeros(n)
    ramp[fade_start:transition_index] = 0.5 - 0.5 * np.cos(
        np.pi * (np.arange(transition_index - fade_start) + 0.5) / max(transition_index - fade_start, 1)
    )
    ramp[transition_index:] = 1.0
    return ism * (1.0 - ramp) + tail * ramp * 10.0 ** (gain_db / 20.0), gain_db
