"""The material database: absorption and scattering per octave band, with where each figure comes from.

Absorption figures are the tabulated values of Vorländer (2008), *Auralization*, Annex A (the same table
pyroomacoustics ships). Scattering figures for seats and audience are that annex's theatre-audience row;
for the other surfaces they are our estimates by surface type (smooth, panel, draped), stated as such.
Where the source gives no 8 kHz value, the API shows ``null`` and the simulation repeats the 4 kHz value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sonalyze_simulation.bands import BAND_KEYS

VORLAENDER_2008: Final = "Vorländer, M. (2008). Auralization. Springer. Annex A, absorption coefficients"
VORLAENDER_2008_SCATTERING: Final = (
    "Vorländer, M. (2008). Auralization. Springer. Annex A, scattering coefficients (theatre audience)"
)


@dataclass(frozen=True, slots=True)
class ScatteringProfile:
    """Scattering per band (125 Hz - 8 kHz) and where it comes from."""

    coefficients: tuple[float, ...]
    source: str


SMOOTH: Final = ScatteringProfile(
    (0.05,) * 7, "estimate: smooth flat surface, scattering ~0.05 at all bands (not a measured value)"
)
PANEL: Final = ScatteringProfile(
    (0.1,) * 7, "estimate: flat panel or covering with small surface relief, ~0.1 (not a measured value)"
)
DRAPED: Final = ScatteringProfile(
    (0.1, 0.15, 0.2, 0.3, 0.4, 0.4, 0.4),
    "estimate: folded or hanging fabric, rising with frequency as the folds become large (not a measured value)",
)
SEATS: Final = ScatteringProfile((0.3, 0.5, 0.6, 0.6, 0.7, 0.7, 0.7), VORLAENDER_2008_SCATTERING)


@dataclass(frozen=True, slots=True)
class MaterialRecord:
    """One material; ``absorption`` has one value per band of `BAND_KEYS`, ``None`` where the source has none."""

    name: str
    category: str
    description: str
    absorption: tuple[float | None, ...]
    scattering: tuple[float, ...]
    absorption_source: str
    scattering_source: str
    aliases: tuple[str, ...] = field(default=())

    def absorption_for_simulation(self) -> tuple[float, ...]:
        """Absorption for all bands: a missing 8 kHz value repeats the 4 kHz one."""
        values: list[float] = []
        for value in self.absorption:
            values.append(values[-1] if value is None else value)
        return tuple(values)

    def as_dict(self) -> dict[str, object]:
        """Our per-band table plus the app's picker fields: ``id``, ``display_name``, scalar coefficients."""
        absorption = dict(zip(BAND_KEYS, self.absorption, strict=True))
        scattering = dict(zip(BAND_KEYS, self.scattering, strict=True))
        return {
            "id": self.name,
            "name": self.name,
            "display_name": self.description,
            "category": self.category,
            "description": self.description,
            "absorption": _single_number(absorption),
            "scattering": _single_number(scattering),
            "single_number_bands_hz": list(SINGLE_NUMBER_BANDS),
            "absorption_bands": absorption,
            "scattering_bands": scattering,
            "absorption_source": self.absorption_source,
            "scattering_source": self.scattering_source,
            "aliases": list(self.aliases),
        }


SINGLE_NUMBER_BANDS: Final = ("500", "1000")
"""The app's scalar ``absorption``/``scattering``: the mean of these bands (the mid-frequency value that
the reverberation single numbers of ISO 3382-1 use too)."""


def _single_number(by_band: Mapping[str, float | None]) -> float:
    return round(sum(by_band[band] or 0.0 for band in SINGLE_NUMBER_BANDS) / len(SINGLE_NUMBER_BANDS), 4)


def _m(
    name: str, category: str, description: str, absorption: tuple[float | None, ...], scattering: ScatteringProfile
) -> MaterialRecord:
    return MaterialRecord(
        name=name,
        category=category,
        description=description,
        absorption=absorption,
        scattering=scattering.coefficients,
        absorption_source=VORLAENDER_2008,
        scattering_source=scattering.source,
    )


_RECORDS: Final[tuple[MaterialRecord, ...]] = (
    _m(
        "hard_surface",
        "masonry and hard surfaces",
        "Walls, hard surfaces average (brick walls, plaster, hard floors, etc.)",
        (0.02, 0.02, 0.03, 0.03, 0.04, 0.05, 0.05),
        SMOOTH,
    ),
    _m(
        "brickwork",
        "masonry and hard surfaces",
        "Walls, rendered brickwork",
        (0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.04),
        SMOOTH,
    ),
    _m(
        "rough_concrete",
        "masonry and hard surfaces",
        "Rough concrete",
        (0.02, 0.03, 0.03, 0.03, 0.04, 0.07, 0.07),
        SMOOTH,
    ),
    _m(
        "unpainted_concrete",
        "masonry and hard surfaces",
        "Smooth unpainted concrete",
        (0.01, 0.01, 0.02, 0.02, 0.02, 0.05, 0.05),
        SMOOTH,
    ),
    _m(
        "smooth_brickwork_10mm_pointing",
        "masonry and hard surfaces",
        "Smooth brickwork, 10 mm deep pointing, pit sand mortar",
        (0.08, 0.09, 0.12, 0.16, 0.22, 0.24, 0.24),
        SMOOTH,
    ),
    _m(
        "brick_wall_rough",
        "masonry and hard surfaces",
        "Brick wall, stuccoed with a rough finish",
        (0.03, 0.03, 0.03, 0.04, 0.05, 0.07, 0.07),
        SMOOTH,
    ),
    _m(
        "ceramic_tiles",
        "masonry and hard surfaces",
        "Ceramic tiles with a smooth surface",
        (0.01, 0.01, 0.01, 0.02, 0.02, 0.02, 0.02),
        SMOOTH,
    ),
    _m(
        "limestone_wall",
        "masonry and hard surfaces",
        "Limestone walls",
        (0.02, 0.02, 0.03, 0.04, 0.05, 0.05, 0.05),
        SMOOTH,
    ),
    _m(
        "concrete_floor",
        "masonry and hard surfaces",
        "Concrete floor",
        (0.01, 0.03, 0.05, 0.02, 0.02, 0.02, 0.02),
        SMOOTH,
    ),
    _m("marble_floor", "masonry and hard surfaces", "Marble floor", (0.01, 0.01, 0.01, 0.02, 0.02, 0.02, 0.02), SMOOTH),
    _m(
        "plasterboard",
        "lightweight linings",
        "2 * 13 mm plasterboard on steel frame, 50 mm mineral wool in cavity, surface painted",
        (0.15, 0.1, 0.06, 0.04, 0.04, 0.05, 0.05),
        PANEL,
    ),
    _m(
        "wooden_lining",
        "lightweight linings",
        "Wooden lining, 12 mm fixed on frame",
        (0.27, 0.23, 0.22, 0.15, 0.1, 0.07, 0.06),
        PANEL,
    ),
    _m("glass_3mm", "glazing", "Single pane of glass, 3 mm", (0.08, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02), SMOOTH),
    _m("glass_window", "glazing", "Glass window, 0.68 kg/m2", (0.1, 0.05, 0.04, 0.03, 0.03, 0.03, 0.03), SMOOTH),
    _m(
        "double_glazing_30mm",
        "glazing",
        "Double glazing, 2–3 mm glass, > 30 mm gap",
        (0.15, 0.05, 0.03, 0.03, 0.02, 0.02, 0.02),
        SMOOTH,
    ),
    _m(
        "double_glazing_10mm",
        "glazing",
        "Double glazing, 2–3 mm glass, 10 mm gap",
        (0.1, 0.07, 0.05, 0.03, 0.02, 0.02, 0.02),
        SMOOTH,
    ),
    _m("wood_16mm", "wood", "16 mm wood on 40 mm studs", (0.18, 0.12, 0.1, 0.09, 0.08, 0.07, 0.07), PANEL),
    _m("plywood_thin", "wood", "Thin plywood panelling", (0.42, 0.21, 0.1, 0.08, 0.06, 0.06, None), PANEL),
    _m(
        "audience_floor",
        "wood",
        "Audience floor, 2 layers, 33 mm on sleepers over concrete",
        (0.09, 0.06, 0.05, 0.05, 0.05, 0.04, None),
        PANEL,
    ),
    _m(
        "stage_floor",
        "wood",
        "Wood, stage floor, 2 layers, 27 mm over airspace",
        (0.1, 0.07, 0.06, 0.06, 0.06, 0.06, None),
        PANEL,
    ),
    _m("wooden_door", "wood", "Solid wooden door", (0.14, 0.1, 0.06, 0.08, 0.1, 0.1, 0.1), PANEL),
    _m(
        "linoleum_on_concrete",
        "floor coverings",
        "Linoleum, asphalt, rubber, or cork tile on concrete",
        (0.02, 0.03, 0.03, 0.03, 0.03, 0.02, None),
        PANEL,
    ),
    _m("carpet_cotton", "floor coverings", "Cotton carpet", (0.07, 0.31, 0.49, 0.81, 0.66, 0.54, 0.48), PANEL),
    _m(
        "carpet_thin",
        "floor coverings",
        "Thin carpet, cemented to concrete",
        (0.02, 0.04, 0.08, 0.2, 0.35, 0.4, None),
        PANEL,
    ),
    _m(
        "carpet_tufted_9m",
        "floor coverings",
        "9 mm tufted pile carpet on felt underlay",
        (0.08, 0.08, 0.3, 0.6, 0.75, 0.8, 0.8),
        PANEL,
    ),
    _m(
        "carpet_6mm_open_cell_foam",
        "floor coverings",
        "6 mm pile carpet bonded to open-cell foam underlay",
        (0.03, 0.09, 0.2, 0.54, 0.7, 0.72, 0.72),
        PANEL,
    ),
    _m(
        "felt_5mm",
        "floor coverings",
        "Needle felt 5 mm stuck to concrete",
        (0.02, 0.02, 0.05, 0.15, 0.3, 0.4, 0.4),
        PANEL,
    ),
    _m(
        "curtains_cotton_0.5",
        "curtains and blinds",
        "Cotton curtains (0.5 kg/m2) draped to 3/4 area approx. 130 mm from wall",
        (0.3, 0.45, 0.65, 0.56, 0.59, 0.71, 0.71),
        DRAPED,
    ),
    _m(
        "curtains_velvet",
        "curtains and blinds",
        "Tight velvet curtains",
        (0.05, 0.12, 0.35, 0.45, 0.38, 0.36, 0.36),
        DRAPED,
    ),
    _m(
        "curtains_densely_woven",
        "curtains and blinds",
        "Densely woven window curtains 90 mm from wall",
        (0.06, 0.1, 0.38, 0.63, 0.7, 0.73, None),
        DRAPED,
    ),
    _m(
        "curtains_fabric_folded",
        "curtains and blinds",
        "Curtain fabric, folded, 15 cm from wall",
        (0.12, 0.6, 0.98, 1.0, 1.0, 1.0, 1.0),
        DRAPED,
    ),
    _m(
        "blinds_half_open",
        "curtains and blinds",
        "Vertical blinds, 15 cm from wall, half opened (45°)",
        (0.03, 0.09, 0.24, 0.46, 0.79, 0.76, None),
        DRAPED,
    ),
    _m(
        "chairs_wooden",
        "seating (empty)",
        "Wooden chairs without cushion",
        (0.05, 0.08, 0.1, 0.12, 0.12, 0.12, None),
        SEATS,
    ),
    _m(
        "chairs_unoccupied_plastic",
        "seating (empty)",
        "Unoccupied plastic chairs",
        (0.06, 0.1, 0.1, 0.2, 0.3, 0.2, 0.2),
        SEATS,
    ),
    _m(
        "chairs_medium_upholstered",
        "seating (empty)",
        "Medium upholstered concert chairs, empty",
        (0.49, 0.66, 0.8, 0.88, 0.82, 0.7, None),
        SEATS,
    ),
    _m(
        "chairs_heavy_upholstered",
        "seating (empty)",
        "Heavily upholstered seats, unoccupied",
        (0.7, 0.76, 0.81, 0.84, 0.84, 0.81, None),
        SEATS,
    ),
    _m(
        "audience_wooden_chairs_2_m2",
        "audience",
        "Audience on wooden chairs, 2 per m2",
        (0.24, 0.4, 0.78, 0.98, 0.96, 0.87, 0.87),
        SEATS,
    ),
    _m(
        "audience_upholstered_chairs_1",
        "audience",
        "Audience in moderately upholstered chairs 0,85 m × 0,63 m",
        (0.72, 0.82, 0.91, 0.93, 0.94, 0.87, None),
        SEATS,
    ),
    _m(
        "orchestra_1.5_m2",
        "audience",
        "Orchestra with instruments on podium, 1.5 m2 per person",
        (0.27, 0.53, 0.67, 0.93, 0.87, 0.8, 0.8),
        SEATS,
    ),
    _m("audience_1_m2", "audience", "Audience area, 1 person / m2", (0.16, 0.29, 0.55, 0.8, 0.92, 0.9, None), SEATS),
    _m(
        "panel_fabric_covered_6pcf",
        "wall absorbers",
        "Fabric-covered panel, 6 pcf rockwool core",
        (0.46, 0.93, 1.0, 1.0, 1.0, 1.0, 1.0),
        PANEL,
    ),
    _m(
        "acoustical_plaster_25mm",
        "wall absorbers",
        "Acoustical plaster, approx. 25 mm thick, 3.5 kg/m2/cm",
        (0.17, 0.36, 0.66, 0.65, 0.62, 0.68, None),
        PANEL,
    ),
    _m(
        "rockwool_50mm_80kgm3",
        "wall absorbers",
        "Rockwool thickness = 50 mm, 80 kg/m3",
        (0.22, 0.6, 0.92, 0.9, 0.88, 0.88, 0.88),
        PANEL,
    ),
    _m(
        "mineral_wool_50mm_40kgm3",
        "wall absorbers",
        "50 mm mineral wool (40 kg/m3), glued to wall, untreated surface",
        (0.15, 0.7, 0.6, 0.6, 0.85, 0.9, 0.9),
        PANEL,
    ),
    _m(
        "perforated_veneered_chipboard",
        "wall absorbers",
        "Perforated veneered chipboard, 50 mm, 1 mm holes, 3 mm spacing, 9% hole surface ratio, 150 mm cavity filled with 30 mm mineral wool",
        (0.41, 0.67, 0.58, 0.59, 0.68, 0.35, None),
        PANEL,
    ),
    _m(
        "ceiling_plasterboard",
        "ceiling absorbers",
        "Plasterboard ceiling on battens with large air-space above",
        (0.2, 0.15, 0.1, 0.08, 0.04, 0.02, None),
        PANEL,
    ),
    _m(
        "ceiling_fissured_tile",
        "ceiling absorbers",
        "Fissured ceiling tile",
        (0.49, 0.53, 0.53, 0.75, 0.92, 0.99, None),
        PANEL,
    ),
    _m(
        "ceiling_perforated_gypsum_board",
        "ceiling absorbers",
        "Perforated 27 mm gypsum board (16%), d = 4,5 mm, 300 mm from ceiling",
        (0.45, 0.55, 0.6, 0.9, 0.86, 0.75, None),
        PANEL,
    ),
    _m(
        "ceiling_melamine_foam",
        "ceiling absorbers",
        "Wedge-shaped, melamine foam, ceiling tile",
        (0.12, 0.33, 0.83, 0.97, 0.98, 0.95, None),
        PANEL,
    ),
    _m(
        "ceiling_metal_panel",
        "ceiling absorbers",
        "Metal panel ceiling, backed by 20 mm Sillan acoustic tiles, panel width 85 mm, panel spacing 15 mm, cavity 35 cm",
        (0.59, 0.8, 0.82, 0.65, 0.27, 0.23, None),
        PANEL,
    ),
    _m(
        "ceiling_fibre_absorber",
        "ceiling absorbers",
        "Fibre absorber on perforated sheet metal cartridge, 0,5 mm zinc-plated steel, 1.5 mm hole diameter, 200 mm cavity filled with 20 mm mineral wool (20 kg/m3), inflammable",
        (0.48, 0.97, 1.0, 0.97, 1.0, 1.0, 1.0),
        PANEL,
    ),
    _m(
        "hanging_absorber_panels_1",
        "special absorbers",
        "Hanging absorber panels (foam), 400 mm depth, 400 mm distance",
        (0.25, 0.45, 0.8, 0.9, 0.85, 0.8, None),
        DRAPED,
    ),
)

# everyday words a user (or the app) may send, each pointing at the closest row of the table
ALIASES: Final[dict[str, str]] = {
    "concrete": "unpainted_concrete",
    "plaster": "hard_surface",
    "painted_plaster": "hard_surface",
    "brick": "brickwork",
    "tiles": "ceramic_tiles",
    "glass": "glass_window",
    "window": "glass_window",
    "wood": "wood_16mm",
    "wood_panel": "wooden_lining",
    "wood_panels": "wooden_lining",
    "parquet": "wood_16mm",
    "door": "wooden_door",
    "linoleum": "linoleum_on_concrete",
    "carpet": "carpet_tufted_9m",
    "curtains": "curtains_cotton_0.5",
    "drapes": "curtains_fabric_folded",
    "acoustic_tile": "ceiling_fissured_tile",
    "acoustic_tiles": "ceiling_fissured_tile",
    "acoustic_panel": "panel_fabric_covered_6pcf",
    "audience": "audience_upholstered_chairs_1",
    "audience_seating": "audience_upholstered_chairs_1",
    "seats": "chairs_medium_upholstered",
}


def _with_aliases(records: tuple[MaterialRecord, ...]) -> dict[str, MaterialRecord]:
    by_target: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        by_target.setdefault(target, []).append(alias)
    out: dict[str, MaterialRecord] = {}
    for record in records:
        aliases = tuple(sorted(by_target.get(record.name, ())))
        out[record.name] = MaterialRecord(
            name=record.name,
            category=record.category,
            description=record.description,
            absorption=record.absorption,
            scattering=record.scattering,
            absorption_source=record.absorption_source,
            scattering_source=record.scattering_source,
            aliases=aliases,
        )
    return out


MATERIALS: Final[dict[str, MaterialRecord]] = _with_aliases(_RECORDS)


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def find_material(name: str) -> MaterialRecord | None:
    """The material called ``name`` (case, spaces and dashes ignored; aliases accepted), else None."""
    key = _normalise(name)
    key = ALIASES.get(key, key)
    return MATERIALS.get(key)


def close_matches(name: str, limit: int = 5) -> list[str]:
    """Names that look like ``name``: spelling neighbours first, then names containing it."""
    key = _normalise(name)
    candidates = [*MATERIALS, *ALIASES]
    found = difflib.get_close_matches(key, candidates, n=limit, cutoff=0.6)
    for candidate in candidates:
        if len(found) >= limit:
            break
        if key and (key in candidate or candidate in key) and candidate not in found:
            found.append(candidate)
    return found


def list_materials(category: str | None = None) -> list[dict[str, object]]:
    """The table as JSON-ready dicts, optionally one category."""
    return [r.as_dict() for r in MATERIALS.values() if category is None or r.category == category]
