"""The material database: size, shape, sources, lookup."""

from __future__ import annotations

import pytest

from sonalyze_simulation.bands import BAND_KEYS
from sonalyze_simulation.materials import ALIASES, MATERIALS, close_matches, find_material


class TestDatabase:
    def test_has_at_least_thirty_materials(self) -> None:
        assert len(MATERIALS) >= 30

    @pytest.mark.parametrize("name", sorted(MATERIALS))
    def test_every_material_has_seven_bands_in_range_and_its_sources(self, name: str) -> None:
        record = MATERIALS[name].as_dict()
        assert list(record["absorption_bands"]) == list(BAND_KEYS)
        assert list(record["scattering_bands"]) == list(BAND_KEYS)
        # the tables give 125 Hz to 4 kHz at least; only 8 kHz may be missing
        assert all(record["absorption_bands"][k] is not None for k in BAND_KEYS[:-1])
        values = [
            v for v in [*record["absorption_bands"].values(), *record["scattering_bands"].values()] if v is not None
        ]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert record["absorption_source"] and record["scattering_source"] and record["category"]

    def test_missing_8k_repeats_4k_in_simulation(self) -> None:
        plywood = MATERIALS["plywood_thin"]
        assert plywood.absorption[-1] is None
        assert plywood.absorption_for_simulation()[-1] == plywood.absorption[-2]

    @pytest.mark.parametrize(
        "word",
        ["concrete", "plaster", "carpet", "curtains", "glass", "wood_panels", "acoustic_tiles", "audience_seating"],
    )
    def test_the_issues_everyday_materials_resolve(self, word: str) -> None:
        assert find_material(word) is not None

    def test_aliases_point_at_real_rows(self) -> None:
        assert all(target in MATERIALS for target in ALIASES.values())


class TestLookup:
    def test_case_spaces_and_dashes_are_ignored(self) -> None:
        assert find_material("Rough Concrete") is MATERIALS["rough_concrete"]
        assert find_material("rough-concrete") is MATERIALS["rough_concrete"]

    def test_unknown_name(self) -> None:
        assert find_material("unobtainium") is None

    def test_close_matches_for_a_misspelling(self) -> None:
        assert "carpet" in close_matches("carpt")

    def test_close_matches_for_a_partial_name(self) -> None:
        assert any(name.startswith("curtains") for name in close_matches("curtain"))
