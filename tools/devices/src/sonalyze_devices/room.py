"""The demo's room: geometry, materials and where each virtual phone stands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_ROOM_DIMENSIONS_M = (6.0, 4.0, 2.8)


@dataclass(frozen=True)
class RoomLayout:
    """A floor plan extruded to ``height_m``, its materials, and a position per slot id."""

    vertices_m: list[list[float]]
    height_m: float
    materials: dict[str, Any]
    positions_m: dict[str, list[float]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The ``map.room`` shape the app shares with ``lobby.room_snapshot`` and ``measurement.create_job``."""
        return {
            "vertices": self.vertices_m,
            "height_m": self.height_m,
            "materials": self.materials,
            "positions": [{"slot_id": slot, "position_m": pos} for slot, pos in self.positions_m.items()],
        }

    def app_room_model(self, slot_names: dict[str, str] | None = None) -> dict[str, Any]:
        """The same room as the app's three.js-style scene (spec phone-app.md section 5): x and z on
        the floor, y up; walls from the floor polygon; positions keyed by the app's slot ids."""
        names = slot_names or {}
        xs = [v[0] for v in self.vertices_m]
        zs = [v[1] for v in self.vertices_m]
        walls = [
            {"start": {"x": a[0], "z": a[1]}, "end": {"x": b[0], "z": b[1]}}
            for a, b in zip(self.vertices_m, self.vertices_m[1:] + self.vertices_m[:1], strict=True)
        ]
        wall = self.materials.get("default_material", {})
        floor = self.materials.get("surfaces", {}).get("floor", wall)

        def surface(material: dict[str, Any], name: str) -> dict[str, Any]:
            absorption = material.get("absorption", 0.1)
            mean = sum(absorption[2:4]) / 2 if isinstance(absorption, list) else absorption
            return {
                "material_id": name,
                "absorption": round(float(mean), 3),
                "scattering": material.get("scattering", 0.1),
            }

        def placed(prefix: str) -> list[dict[str, Any]]:
            return [
                {
                    "id": names.get(slot, slot),
                    "position": {"x": pos[0], "y": pos[2] if len(pos) > 2 else 1.2, "z": pos[1]},
                }
                for slot, pos in self.positions_m.items()
                if slot.startswith(prefix)
            ]

        return {
            "rooms": [
                {
                    "dimensions": {"width": max(xs) - min(xs), "depth": max(zs) - min(zs), "height": self.height_m},
                    "walls": walls,
                    "materials": {
                        "wall": surface(wall, "plaster"),
                        "floor": surface(floor, "wood_carpet"),
                        "ceiling": surface(wall, "plaster"),
                    },
                    "furniture": [],
                }
            ],
            "speakers": placed("speaker"),
            "microphones": placed("mic"),
        }

    def simulation_request(self, pairs: list[tuple[str, str]], *, sample_rate_hz: int) -> dict[str, Any]:
        sources = sorted({s for s, _ in pairs})
        mics = sorted({m for _, m in pairs})
        return {
            "room": {
                "type": "polygon",
                "vertices": self.vertices_m,
                "height_m": self.height_m,
                **self.materials,
            },
            "sources": [{"id": s, "position_m": self.positions_m[s]} for s in sources],
            "microphones": [{"id": m, "position_m": self.positions_m[m]} for m in mics],
            "method": "hybrid",
            "sample_rate": sample_rate_hz,
        }


def place_devices(
    dimensions_m: tuple[float, float, float], n_speakers: int, n_microphones: int
) -> dict[str, list[float]]:
    """Speakers along the wall at y = 0, a fifth of the depth in; microphones spread over the far half."""
    x_m, y_m, z_m = dimensions_m
    height_m = min(1.2, 0.5 * z_m)
    positions: dict[str, list[float]] = {}
    for i in range(n_speakers):
        positions[f"speaker_{i + 1}"] = [round(x_m * (i + 1) / (n_speakers + 1), 3), round(0.2 * y_m, 3), height_m]
    for j in range(n_microphones):
        depth = 0.55 + 0.2 * (j % 2)
        positions[f"mic_{j + 1}"] = [
            round(x_m * (j + 1) / (n_microphones + 1), 3),
            round(depth * y_m, 3),
            height_m + 0.1,
        ]
    return positions


def layout_from_profile(profile: dict[str, Any], n_speakers: int, n_microphones: int) -> RoomLayout:
    """A room of the simulation's reference profiles (``GET /v1/simulation/reference-profiles/{id}``)."""
    room = profile["request"]["room"]
    if room.get("type", "shoebox") == "shoebox":
        x_m, y_m, z_m = room["dimensions_m"]
        vertices = [[0.0, 0.0], [x_m, 0.0], [x_m, y_m], [0.0, y_m]]
    else:
        vertices = [list(map(float, v)) for v in room["vertices"]]
        z_m = room["height_m"]
        x_m = max(v[0] for v in vertices) - min(v[0] for v in vertices)
        y_m = max(v[1] for v in vertices) - min(v[1] for v in vertices)
    materials = {key: room[key] for key in ("default_material", "surfaces") if key in room}
    return RoomLayout(
        vertices_m=vertices,
        height_m=float(z_m),
        materials=materials,
        positions_m=place_devices((x_m, y_m, z_m), n_speakers, n_microphones),
    )


def default_layout(n_speakers: int, n_microphones: int) -> RoomLayout:
    """A 6 x 4 x 2.8 m living room: plaster walls, wooden floor with a carpet, plaster ceiling."""
    x_m, y_m, z_m = DEFAULT_ROOM_DIMENSIONS_M
    positions = place_devices(DEFAULT_ROOM_DIMENSIONS_M, n_speakers, n_microphones)
    materials = {
        "default_material": {"absorption": [0.10, 0.08, 0.06, 0.06, 0.07, 0.08, 0.08], "scattering": 0.1},
        "surfaces": {"floor": {"absorption": [0.08, 0.24, 0.57, 0.69, 0.71, 0.73, 0.73], "scattering": 0.2}},
    }
    return RoomLayout(
        vertices_m=[[0.0, 0.0], [x_m, 0.0], [x_m, y_m], [0.0, y_m]],
        height_m=z_m,
        materials=materials,
        positions_m=positions,
    )
