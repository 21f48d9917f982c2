"""The phone app's room model (a three.js-style scene) as our canonical simulation request.

The app's scene (phone-app spec section 5): ``{rooms: [{dimensions: {width, depth, height}, walls: [{start:
{x, z}, end: {x, z}}], materials: {wall, floor, ceiling}, furniture: [...]}], sources|loudspeakers|speakers:
[...], microphones|mics|receivers: [...]}``, axes x and z horizontal, y up, metres.

Mapping: scene x -> our x, scene z -> our y, scene y -> our z, shifted so the room's floor plan starts at
(0, 0). Walls chained end to start give the polygon; a room without walls is a width x depth box centred
on the origin (three.js' convention). Furniture is not geometry in our engine: each piece is a box whose
top and sides, in its type's default material, add their absorption area to the floor's (the floor under
it no longer counts), and raise the floor's scattering. Without sources or microphones, one of each is
placed inside the room. A scene that makes no room raises `BadRequest` saying why.
"""

from __future__ import annotations

import math
from typing import Any, Final

from sonalyze_protocol.errors import BadRequest
from sonalyze_simulation.bands import N_BANDS
from sonalyze_simulation.materials import find_material

JOIN_TOLERANCE_M: Final = 0.05
"""Wall ends closer than this are the same corner."""
DEFAULT_HEIGHT_M: Final = 2.5
DEFAULT_SOURCE_HEIGHT_M: Final = 1.5
DEFAULT_MICROPHONE_HEIGHT_M: Final = 1.2
PLACEMENT_CLEARANCE_M: Final = 0.5
FURNISHED_FLOOR_SCATTERING: Final = 0.5
"""Scattering of a floor with furniture on it (boxes of ~0.5-2 m diffuse the mid and high bands)."""

FURNITURE_MATERIALS: Final = {
    "sofa": "chairs_heavy_upholstered",
    "couch": "chairs_heavy_upholstered",
    "armchair": "chairs_heavy_upholstered",
    "bed": "chairs_heavy_upholstered",
    "chair": "chairs_wooden",
    "stool": "chairs_wooden",
    "table": "wood_16mm",
    "desk": "wood_16mm",
    "wardrobe": "wood_16mm",
    "cabinet": "wood_16mm",
    "cupboard": "wood_16mm",
    "shelf": "wood_16mm",
    "bookshelf": "wood_16mm",
    "dresser": "wood_16mm",
    "piano": "wood_16mm",
    "fridge": "hard_surface",
    "refrigerator": "hard_surface",
    "oven": "hard_surface",
    "stove": "hard_surface",
    "washing_machine": "hard_surface",
    "dishwasher": "hard_surface",
    "tv": "glass_3mm",
    "television": "glass_3mm",
    "monitor": "glass_3mm",
    "mirror": "glass_3mm",
    "curtain": "curtains_velvet",
    "curtains": "curtains_velvet",
    "rug": "carpet_tufted_9m",
    "carpet": "carpet_tufted_9m",
}
"""Furniture type -> a row of ``GET /materials``; any other type is wood (``DEFAULT_FURNITURE_MATERIAL``)."""
DEFAULT_FURNITURE_MATERIAL: Final = "wood_16mm"
SOURCE_KEYS: Final = ("sources", "loudspeakers", "speakers")
MICROPHONE_KEYS: Final = ("microphones", "mics", "receivers")
OPTION_KEYS: Final = ("method", "max_order", "sample_rate_hz", "sample_rate", "air_absorption", "n_rays", "seed")


def is_scene(value: Any) -> bool:
    """Whether ``value`` looks like the app's scene (it has ``rooms``)."""
    return isinstance(value, dict) and "rooms" in value


def scene_request(scene: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The canonical request dict for the app's scene, with the request's other options kept."""
    if not isinstance(scene, dict):
        raise BadRequest("room_model must be the app's scene object: {rooms: [...], sources?, microphones?}")
    rooms = scene.get("rooms")
    if not isinstance(rooms, list) or not rooms or not isinstance(rooms[0], dict):
        raise BadRequest("room_model.rooms must hold at least one room (walls or dimensions)", field="room_model.rooms")
    room = rooms[0]
    height_m = _number(_dict(room.get("dimensions")).get("height"), "room_model.rooms[0].dimensions.height")
    height_m = DEFAULT_HEIGHT_M if height_m is None else height_m
    plan = _floor_plan(room)
    min_x = min(x for x, _ in plan)
    min_z = min(z for _, z in plan)
    vertices = [[round(x - min_x, 4), round(z - min_z, 4)] for x, z in plan]

    def ours(position: Any, what: str, default_height_m: float) -> list[float]:
        point = _dict(position)
        x, z = _number(point.get("x"), f"{what}.x"), _number(point.get("z"), f"{what}.z")
        if x is None or z is None:
            raise BadRequest(f"{what} needs x and z (metres)", field=what)
        y = _number(point.get("y"), f"{what}.y")
        return [round(x - min_x, 4), round(z - min_z, 4), default_height_m if y is None else y]

    materials = _dict(room.get("materials"))
    surfaces: dict[str, Any] = {}
    if materials.get("floor") is not None:
        surfaces["floor"] = _surface_material(materials["floor"], "room_model.rooms[0].materials.floor")
    furniture = [f for f in room.get("furniture") or [] if isinstance(f, dict)]
    if furniture:
        from sonalyze_simulation.schemas import DEFAULT_ABSORPTION  # schemas imports this module

        floor = surfaces.get("floor") or {"absorption": DEFAULT_ABSORPTION}
        surfaces["floor"] = _furnished_floor(floor, furniture, _polygon_area_m2(vertices))
    if materials.get("ceiling") is not None:
        surfaces["ceiling"] = _surface_material(materials["ceiling"], "room_model.rooms[0].materials.ceiling")
    request: dict[str, Any] = {
        "room": {
            "type": "polygon",
            "vertices": vertices,
            "height_m": height_m,
            "surfaces": surfaces,
        }
    }
    if materials.get("wall") is not None:
        request["room"]["default_material"] = _surface_material(materials["wall"], "room_model.rooms[0].materials.wall")
    sources = _placements(scene, SOURCE_KEYS, "source", ours, DEFAULT_SOURCE_HEIGHT_M)
    microphones = _placements(scene, MICROPHONE_KEYS, "microphone", ours, DEFAULT_MICROPHONE_HEIGHT_M)
    if not sources or not microphones:
        source_xy, microphone_xy = default_positions(vertices)
        sources = sources or [{"id": "source_1", "position_m": [*source_xy, DEFAULT_SOURCE_HEIGHT_M]}]
        microphones = microphones or [
            {"id": "microphone_1", "position_m": [*microphone_xy, DEFAULT_MICROPHONE_HEIGHT_M]}
        ]
    request["sources"] = sources
    request["microphones"] = microphones
    request.update({key: options[key] for key in OPTION_KEYS if key in options})
    return request


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{what} must be a number (metres), got {value!r}", field=what)
    return float(value)


def _floor_plan(room: dict[str, Any]) -> list[tuple[float, float]]:
    """The room's corners (x, z) in order: chained walls, else the centred width x depth rectangle."""
    walls = [w for w in room.get("walls") or [] if isinstance(w, dict)]
    if walls:
        return _chain_walls(walls)
    dimensions = _dict(room.get("dimensions"))
    width_m = _number(dimensions.get("width"), "room_model.rooms[0].dimensions.width")
    depth_m = _number(dimensions.get("depth"), "room_model.rooms[0].dimensions.depth")
    if not width_m or not depth_m or width_m <= 0 or depth_m <= 0:
        raise BadRequest(
            "room_model.rooms[0] makes no room: give walls [{start: {x, z}, end: {x, z}}, ...] that close "
            "into a floor plan, or dimensions {width, depth, height} in metres",
            field="room_model.rooms[0]",
        )
    half_w, half_d = width_m / 2, depth_m / 2
    return [(-half_w, -half_d), (half_w, -half_d), (half_w, half_d), (-half_w, half_d)]


def _chain_walls(walls: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Follow the walls corner to corner (either direction) into one closed ring."""
    segments = []
    for index, wall in enumerate(walls):
        ends = []
        for key in ("start", "end"):
            point = _dict(wall.get(key))
            x = _number(point.get("x"), f"room_model.rooms[0].walls[{index}].{key}.x")
            z = _number(point.get("z"), f"room_model.rooms[0].walls[{index}].{key}.z")
            if x is None or z is None:
                raise BadRequest(
                    f"room_model.rooms[0].walls[{index}].{key} needs x and z", field="room_model.rooms[0].walls"
                )
            ends.append((x, z))
        if math.dist(*ends) >= JOIN_TOLERANCE_M:  # zero-length walls carry no corner
            segments.append((ends[0], ends[1]))
    if len(segments) < 3:
        raise BadRequest(
            "room_model.rooms[0].walls must be at least 3 walls that close into a floor plan",
            field="room_model.rooms[0].walls",
        )
    ring = [segments[0][0], segments[0][1]]
    remaining = segments[1:]
    while remaining:
        tail = ring[-1]
        for i, (a, b) in enumerate(remaining):
            if math.dist(a, tail) < JOIN_TOLERANCE_M or math.dist(b, tail) < JOIN_TOLERANCE_M:
                ring.append(b if math.dist(a, tail) < JOIN_TOLERANCE_M else a)
                remaining.pop(i)
                break
        else:
            raise BadRequest(
                f"room_model.rooms[0].walls do not close: no wall continues from corner ({tail[0]:g}, {tail[1]:g})",
                field="room_model.rooms[0].walls",
            )
    if math.dist(ring[0], ring[-1]) >= JOIN_TOLERANCE_M:
        raise BadRequest(
            "room_model.rooms[0].walls do not close: the last wall does not end where the first starts",
            field="room_model.rooms[0].walls",
        )
    return ring[:-1]


def _surface_material(value: Any, what: str) -> dict[str, Any]:
    """The app's ``{material_id or id, absorption, scattering}``: our named row when we know it, else its numbers."""
    if isinstance(value, str):
        return {"name": value}
    spec = _dict(value)
    name = spec.get("material_id") or spec.get("id")
    scattering = spec.get("scattering")
    if isinstance(name, str) and find_material(name) is not None:
        return {"name": name, **({"scattering": scattering} if scattering is not None else {})}
    if spec.get("absorption") is not None:
        return {"absorption": spec["absorption"], **({"scattering": scattering} if scattering is not None else {})}
    if isinstance(name, str):
        return {"name": name}  # unknown: planning answers with close matches
    raise BadRequest(f"{what} needs material_id (a name from GET /materials) or absorption", field=what)


def _band_absorption(material: dict[str, Any]) -> list[float]:
    if "name" in material:
        record = find_material(material["name"])
        if record is None:
            raise BadRequest(f"unknown material {material['name']!r}", field="room_model.rooms[0].materials.floor")
        return list(record.absorption_for_simulation())
    absorption = material["absorption"]
    if isinstance(absorption, int | float):
        return [float(absorption)] * N_BANDS
    raise BadRequest("room_model.rooms[0].materials.floor.absorption must be one number", field="room_model")


def _furnished_floor(floor: dict[str, Any], furniture: list[dict[str, Any]], floor_area_m2: float) -> dict[str, Any]:
    """The floor's material with the furniture's absorption area folded in (Sabine: areas times coefficients)."""
    floor_alpha = _band_absorption(floor)
    area = [floor_area_m2 * alpha for alpha in floor_alpha]
    covered_m2 = 0.0
    for index, piece in enumerate(furniture):
        size = _dict(piece.get("dimensions"))
        w = _number(size.get("width"), f"room_model.rooms[0].furniture[{index}].dimensions.width") or 0.0
        d = _number(size.get("depth"), f"room_model.rooms[0].furniture[{index}].dimensions.depth") or 0.0
        h = _number(size.get("height"), f"room_model.rooms[0].furniture[{index}].dimensions.height") or 0.0
        if w <= 0 or d <= 0:
            continue
        kind = str(piece.get("type") or "").strip().lower().replace(" ", "_")
        record = find_material(FURNITURE_MATERIALS.get(kind, DEFAULT_FURNITURE_MATERIAL))
        assert record is not None
        exposed_m2 = w * d + 2 * (w + d) * max(h, 0.0)
        covered_m2 += w * d
        for band, alpha in enumerate(record.absorption_for_simulation()):
            area[band] += exposed_m2 * alpha - w * d * floor_alpha[band]
    absorption = [round(min(max(a / floor_area_m2, 0.0), 1.0), 4) for a in area]
    scattering = FURNISHED_FLOOR_SCATTERING if covered_m2 > 0 else floor.get("scattering", 0.1)
    return {"absorption": absorption, "scattering": scattering}


def _placements(scene: dict[str, Any], keys: tuple[str, ...], kind: str, ours: Any, height_m: float) -> list[dict]:
    for key in keys:
        items = scene.get(key)
        if isinstance(items, list) and items:
            out = []
            for index, item in enumerate(items):
                item = _dict(item)
                position = item.get("position", item)
                out.append(
                    {
                        "id": str(item.get("id") or f"{kind}_{index + 1}"),
                        "position_m": ours(position, f"room_model.{key}[{index}].position", height_m),
                    }
                )
            return out
    return []


def _polygon_area_m2(vertices: list[list[float]]) -> float:
    n = len(vertices)
    return (
        abs(
            sum(vertices[i][0] * vertices[(i + 1) % n][1] - vertices[(i + 1) % n][0] * vertices[i][1] for i in range(n))
        )
        / 2
    )


def _inside(x: float, y: float, vertices: list[list[float]]) -> bool:
    inside = False
    n = len(vertices)
    for i in range(n):
        (x1, y1), (x2, y2) = vertices[i], vertices[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _wall_distance_m(x: float, y: float, vertices: list[list[float]]) -> float:
    best = math.inf
    n = len(vertices)
    for i in range(n):
        (x1, y1), (x2, y2) = vertices[i], vertices[(i + 1) % n]
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy or 1.0)))
        best = min(best, math.hypot(x - (x1 + t * dx), y - (y1 + t * dy)))
    return best


def default_positions(vertices: list[list[float]]) -> tuple[list[float], list[float]]:
    """A source near one end of the room and a microphone near the other, both clear of the walls.

    Grid points (10 cm, coarser in rooms over 10 m) inside the plan with the most clearance up to 0.5 m; the source is the one nearest
    a quarter of the way along the plan's longer side, the microphone nearest three quarters.
    """
    xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    step = max(0.1, max(span_x, span_y) / 100)
    candidates = []
    for i in range(1, int(span_x / step)):
        for j in range(1, int(span_y / step)):
            x, y = min(xs) + i * step, min(ys) + j * step
            if _inside(x, y, vertices):
                candidates.append((min(_wall_distance_m(x, y, vertices), PLACEMENT_CLEARANCE_M), x, y))
    if not candidates:
        raise BadRequest("room_model.rooms[0] is too small to place a source and a microphone in", field="room_model")
    best = max(c[0] for c in candidates)
    clear = [(x, y) for c, x, y in candidates if c >= best - 1e-9]
    if span_x >= span_y:
        targets = [(min(xs) + 0.25 * span_x, min(ys) + 0.5 * span_y), (min(xs) + 0.75 * span_x, min(ys) + 0.5 * span_y)]
    else:
        targets = [(min(xs) + 0.5 * span_x, min(ys) + 0.25 * span_y), (min(xs) + 0.5 * span_x, min(ys) + 0.75 * span_y)]
    source = min(clear, key=lambda p: math.dist(p, targets[0]))
    microphone = min(clear, key=lambda p: math.dist(p, targets[1]))
    if math.dist(source, microphone) < 0.5:  # a small room: as far apart as its clear points allow
        microphone = max(clear, key=lambda p: math.dist(p, source))
    return [round(source[0], 3), round(source[1], 3)], [round(microphone[0], 3), round(microphone[1], 3)]
