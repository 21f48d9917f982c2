"""The octave bands the service reports, as the shared acoustics library names them."""

from __future__ import annotations

from typing import Final

BAND_CENTERS_HZ: Final[tuple[int, ...]] = (125, 250, 500, 1000, 2000, 4000, 8000)
BAND_KEYS: Final[tuple[str, ...]] = tuple(str(f) for f in BAND_CENTERS_HZ)
N_BANDS: Final = len(BAND_CENTERS_HZ)
