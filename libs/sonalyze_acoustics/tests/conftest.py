"""Shared fixtures for the acoustics tests: a factory of synthetic impulse responses with known truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sonalyze_acoustics.synthetic import SyntheticIr, synthetic_ir

SAMPLE_RATE_HZ = 48000.0

ROOMS: dict[str, tuple[tuple[float, ...], float]] = {
    "medium": ((1.2, 1.0, 0.9, 0.8, 0.8, 0.7, 0.6), -2.0),
    "dry": ((0.6, 0.5, 0.4, 0.35, 0.3, 0.3, 0.3), 0.0),
    "live": ((3.0, 2.8, 2.5, 2.2, 2.0, 1.6, 1.2), -6.0),
    "flat_close": ((0.8,) * 7, 3.0),
}
"""Per-band T60 (125 Hz-8 kHz) in seconds and broadband DRR in dB of the reference rooms."""

MakeIr = Callable[..., SyntheticIr]


@pytest.fixture
def make_ir() -> MakeIr:
    """Factory: ``make_ir("medium", inr_db=40, seed=0, **overrides)`` -> SyntheticIr (seeded, deterministic)."""

    def factory(
        room: str = "medium", *, inr_db: float | None = None, seed: int = 0, **overrides: object
    ) -> SyntheticIr:
        t60_s, drr_db = ROOMS[room]
        return synthetic_ir(
            t60_s,
            drr_db,
            overrides.pop("sample_rate_hz", SAMPLE_RATE_HZ),
            np.random.default_rng(seed),
            inr_db=inr_db,
            **overrides,
        )

    return factory


@pytest.fixture
def make_decay_energy() -> Callable[..., np.ndarray]:
    """Factory of squared exponential noise decays: see :func:`exponential_decay_energy`."""
    return exponential_decay_energy


def exponential_decay_energy(
    t60_s: float, sample_rate_hz: float, n_samples: int, noise_power: float, seed: int
) -> np.ndarray:
    """Squared noise with an exponential envelope ``exp(-13.8 t / T60)`` plus white noise of ``noise_power``."""
    rng = np.random.default_rng(seed)
    t_s = np.arange(n_samples) / sample_rate_hz
    signal = rng.standard_normal(n_samples) * np.exp(-6.0 * np.log(10.0) * t_s / (2.0 * t60_s))
    signal += rng.standard_normal(n_samples) * np.sqrt(noise_power)
    return signal**2
