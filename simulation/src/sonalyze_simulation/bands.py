"""The octave bands the service reports: the shared acoustics library's, as keys of the JSON answers."""

from __future__ import annotations

from typing import Final

from sonalyze_acoustics.bands import OCTAVE_BANDS_HZ

BAND_CENTERS_HZ: Final[tuple[int, ...]] = OCTAVE_BANDS_HZ
BAND_KEYS: Final[tuple[str, ...]] = tuple(str(f) for f in BAND_CENTERS_HZ)
N_BANDS: Final = len(BAND_CENTERS_HZ)
