"""Standard rooms with their target reverberation times, each a ready-to-send simulation request.

Targets are mid-frequency RT60 (mean of the 500 Hz and 1 kHz bands) from published guidance, cited per
profile. DIN 18041:2016 gives ``T_target`` from the volume for group-A rooms with a +/-20 % band around
it: A2 speech/presentation ``0.37 lg(V) - 0.14``, A3 teaching/communication ``0.32 lg(V) - 0.17``.
The materials were chosen so the Eyring estimate of each room falls inside its target range.

Every surface carries a scattering of `MODEL_SCATTERING_COEFFICIENT`: a shoebox leaves out furniture,
fittings and surface relief, which make real rooms diffuse. With smooth-surface scattering (0.05) the
hybrid simulation keeps sound grazing between parallel hard walls and predicts two to three times the
reverberation of the furnished room (the classroom: 1.1-2.0 s against a 0.55 s Eyring estimate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

MODEL_SCATTERING_COEFFICIENT: Final = 0.3


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    id: str
    name: str
    description: str
    target_rt60_s: tuple[float, float]
    guidance: str
    request: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        low_s, high_s = self.target_rt60_s
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.name,
            "notes": f"{self.description}. Target: {self.guidance}.",
            "metrics": [
                {
                    "key": "rt60",
                    "label": "RT60 (500 Hz-1 kHz)",
                    "value": round((low_s + high_s) / 2, 3),
                    "unit": "s",
                    "min_value": low_s,
                    "max_value": high_s,
                }
            ],
            "description": self.description,
            "target_rt60_s": {"min": self.target_rt60_s[0], "max": self.target_rt60_s[1], "bands_hz": [500, 1000]},
            "guidance": self.guidance,
            "request": self.request,
        }


def _din_18041_range(coefficient: float, offset: float, volume_m3: float) -> tuple[float, float]:
    target = coefficient * math.log10(volume_m3) + offset
    return (round(0.8 * target, 2), round(1.2 * target, 2))


def _shoebox_request(
    dimensions_m: tuple[float, float, float],
    default: str,
    *,
    floor: str,
    ceiling: str,
    walls: dict[int, str] | None = None,
    sources: list[tuple[str, tuple[float, float, float]]],
    microphones: list[tuple[str, tuple[float, float, float]]],
) -> dict[str, Any]:
    def surface(name: str) -> dict[str, Any]:
        return {"name": name, "scattering": MODEL_SCATTERING_COEFFICIENT}

    surfaces: dict[str, Any] = {"floor": surface(floor), "ceiling": surface(ceiling)}
    if walls:
        surfaces["walls"] = {str(i): surface(name) for i, name in walls.items()}
    return {
        "room": {
            "type": "shoebox",
            "dimensions_m": list(dimensions_m),
            "default_material": surface(default),
            "surfaces": surfaces,
        },
        "sources": [{"id": i, "position_m": list(p)} for i, p in sources],
        "microphones": [{"id": i, "position_m": list(p)} for i, p in microphones],
        "method": "hybrid",
    }


PROFILES: Final[dict[str, ReferenceProfile]] = {
    p.id: p
    for p in (
        ReferenceProfile(
            id="classroom",
            name="Classroom",
            description="9 x 7 x 3 m classroom (189 m3): plastered walls, a window wall, linoleum, acoustic ceiling tiles",
            target_rt60_s=(0.45, 0.6),
            guidance=(
                "ANSI/ASA S12.60-2010 Part 1: at most 0.6 s in unoccupied furnished classrooms under 283 m3; "
                "lower bound from DIN 18041:2016 group A3 (0.8 x (0.32 lg V - 0.17) s)"
            ),
            request=_shoebox_request(
                (9.0, 7.0, 3.0),
                "hard_surface",
                floor="linoleum_on_concrete",
                ceiling="ceiling_fissured_tile",
                walls={0: "glass_window", 2: "wooden_lining"},
                sources=[("teacher", (4.5, 1.2, 1.6))],
                microphones=[("front_row", (4.5, 2.5, 1.2)), ("back_row", (3.0, 6.0, 1.2))],
            ),
        ),
        ReferenceProfile(
            id="office",
            name="Small office",
            description="5 x 4 x 2.8 m office (56 m3): plasterboard walls, carpet, perforated gypsum ceiling",
            target_rt60_s=_din_18041_range(0.32, -0.17, 5.0 * 4.0 * 2.8),
            guidance="DIN 18041:2016 group A3 (communication): T = 0.32 lg V - 0.17 s, +/-20 %",
            request=_shoebox_request(
                (5.0, 4.0, 2.8),
                "plasterboard",
                floor="carpet_thin",
                ceiling="ceiling_perforated_gypsum_board",
                walls={0: "double_glazing_30mm"},
                sources=[("talker", (1.5, 2.0, 1.2))],
                microphones=[("listener", (3.5, 2.0, 1.2))],
            ),
        ),
        ReferenceProfile(
            id="living_room",
            name="Living room",
            description="6 x 4.5 x 2.6 m living room (70 m3): plaster, wooden floor with a carpet, curtains on the window wall",
            target_rt60_s=(0.3, 0.6),
            guidance=(
                "IEC 60268-13:1998 listening room, modelled on a domestic living room: 0.3 to 0.6 s at mid frequencies"
            ),
            request=_shoebox_request(
                (6.0, 4.5, 2.6),
                "hard_surface",
                floor="carpet_6mm_open_cell_foam",
                ceiling="hard_surface",
                walls={0: "curtains_cotton_0.5", 2: "wooden_lining"},
                sources=[("tv_left", (2.5, 0.6, 1.0)), ("tv_right", (3.5, 0.6, 1.0))],
                microphones=[("sofa", (3.0, 3.6, 1.1))],
            ),
        ),
        ReferenceProfile(
            id="lecture_hall",
            name="Lecture hall",
            description="20 x 15 x 5 m lecture hall (1500 m3): audience on upholstered seats, plaster and wood panels",
            target_rt60_s=_din_18041_range(0.37, -0.14, 20.0 * 15.0 * 5.0),
            guidance="DIN 18041:2016 group A2 (speech, presentation): T = 0.37 lg V - 0.14 s, +/-20 %",
            request=_shoebox_request(
                (20.0, 15.0, 5.0),
                "hard_surface",
                floor="audience_1_m2",
                ceiling="plasterboard",
                walls={1: "wood_16mm", 3: "wood_16mm"},
                sources=[("lecturer", (10.0, 1.5, 1.6))],
                microphones=[("row_3", (10.0, 4.0, 1.2)), ("row_12", (6.0, 12.5, 1.2))],
            ),
        ),
        ReferenceProfile(
            id="concert_hall",
            name="Concert hall (shoebox)",
            description="45 x 20 x 17 m shoebox hall (15 300 m3), occupied: audience floor, plaster and wood",
            target_rt60_s=(1.8, 2.2),
            guidance=(
                "Beranek, L. (2004). Concert Halls and Opera Houses, 2nd ed.: occupied mid-frequency RT "
                "1.8 to 2.2 s for symphonic music"
            ),
            request=_shoebox_request(
                (45.0, 20.0, 17.0),
                "hard_surface",
                floor="audience_upholstered_chairs_1",
                ceiling="wood_16mm",
                walls={0: "wooden_lining"},
                sources=[("stage", (5.0, 10.0, 1.5))],
                microphones=[("stalls", (20.0, 10.0, 1.2)), ("rear", (38.0, 12.0, 1.2))],
            ),
        ),
        ReferenceProfile(
            id="control_room",
            name="Studio control room",
            description="5 x 4 x 2.8 m control room (56 m3) treated with a fabric-covered rear wall and a melamine-foam ceiling",
            target_rt60_s=(
                round(0.25 * (5.0 * 4.0 * 2.8 / 100.0) ** (1 / 3) - 0.05, 2),
                round(0.25 * (5.0 * 4.0 * 2.8 / 100.0) ** (1 / 3) + 0.05, 2),
            ),
            guidance="ITU-R BS.1116-3: T_m = 0.25 (V / 100 m3)^(1/3) s +/- 0.05 s",
            request=_shoebox_request(
                (5.0, 4.0, 2.8),
                "plasterboard",
                floor="wood_16mm",
                ceiling="ceiling_melamine_foam",
                walls={2: "panel_fabric_covered_6pcf"},
                sources=[("left", (1.5, 1.0, 1.2)), ("right", (3.5, 1.0, 1.2))],
                microphones=[("mix", (2.5, 2.7, 1.2))],
            ),
        ),
    )
}


def list_profiles() -> list[dict[str, Any]]:
    return [p.as_dict() for p in PROFILES.values()]
