"""Turns the shapes clients actually send into the canonical request, before validation.

The app keeps its floor plan as ``map.room = {"vertices": [[x, y], ...], "height_m": h, ...}``: no ``type``,
maybe extra keys of its own. Such a room (no ``type``) is taken as is: the type is inferred, keys the
simulation does not use are dropped. A room that names its ``type`` is strict: unknown keys are errors.
The app's three.js scene (``room_model``, or a job's ``map`` holding ``rooms``) is converted by `scene`,
which raises `BadRequest` for a scene that makes no room; otherwise nothing here raises and validation
reports what is still wrong.
"""

from __future__ import annotations

from typing import Any, Final

from sonalyze_simulation.scene import is_scene, scene_request

_ROOM_KEYS: Final = {
    "polygon": {"type", "vertices", "height_m", "default_material", "surfaces"},
    "shoebox": {"type", "dimensions_m", "default_material", "surfaces"},
}
_ROOM_ALIASES: Final = {"height": "height_m", "dimensions": "dimensions_m", "material": "default_material"}
_PLACEMENT_ALIASES: Final = {"position": "position_m"}


def adapt_request(data: Any) -> Any:
    """The canonical request dict (a copy), or ``data`` unchanged when it is not a dict."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if "room_model" in out:
        return scene_request(out["room_model"], out)
    if is_scene(out.get("map")) and "room" not in out:
        return scene_request(out["map"], out)
    app_map = out.get("map")
    if "room" not in out and isinstance(app_map, dict) and "room" in app_map:
        out["room"] = app_map["room"]
        out.pop("map")
    if "sources" not in out and "speakers" in out:
        out["sources"] = out.pop("speakers")
    if "room" in out:
        out["room"] = adapt_room(out["room"])
    for key in ("sources", "microphones"):
        if isinstance(out.get(key), list):
            out[key] = [_adapt_placement(p) for p in out[key]]
    return out


def adapt_room(room: Any) -> Any:
    """A room dict with ``type`` set, aliases renamed, vertices as pairs and shorthand materials expanded."""
    if not isinstance(room, dict):
        return room
    out = {_ROOM_ALIASES.get(k, k): v for k, v in room.items()}
    from_app = "type" not in out
    if from_app:
        if "vertices" in out:
            out["type"] = "polygon"
        elif "dimensions_m" in out:
            out["type"] = "shoebox"
        if out.get("type") in _ROOM_KEYS:
            out = {k: v for k, v in out.items() if k in _ROOM_KEYS[out["type"]]}
    if isinstance(out.get("vertices"), list):
        out["vertices"] = _adapt_vertices(out["vertices"])
    if "default_material" in out:
        out["default_material"] = adapt_material(out["default_material"])
    surfaces = out.get("surfaces")
    if isinstance(surfaces, dict):
        surfaces = dict(surfaces)
        for key in ("floor", "ceiling"):
            if key in surfaces:
                surfaces[key] = adapt_material(surfaces[key])
        if isinstance(surfaces.get("walls"), dict):
            surfaces["walls"] = {k: adapt_material(v) for k, v in surfaces["walls"].items()}
        elif isinstance(surfaces.get("walls"), list):
            # a list gives one material per wall in order; null keeps the default
            surfaces["walls"] = {str(i): adapt_material(v) for i, v in enumerate(surfaces["walls"]) if v is not None}
        out["surfaces"] = surfaces
    return out


def adapt_material(material: Any) -> Any:
    """``"carpet"`` -> ``{"name": "carpet"}``; ``0.3`` -> ``{"absorption": 0.3}``; dicts unchanged."""
    if isinstance(material, str):
        return {"name": material}
    if isinstance(material, int | float) and not isinstance(material, bool):
        return {"absorption": material}
    return material


def _adapt_vertices(vertices: list[Any]) -> list[Any]:
    points = [[v.get("x"), v.get("y")] if isinstance(v, dict) else v for v in vertices]
    # a closed ring repeats its first vertex at the end; the room needs it once
    if len(points) > 3 and points[0] == points[-1]:
        points = points[:-1]
    return points


def _adapt_placement(placement: Any) -> Any:
    if not isinstance(placement, dict):
        return placement
    out = {_PLACEMENT_ALIASES.get(k, k): v for k, v in placement.items()}
    position = out.get("position_m")
    if isinstance(position, dict):
        out["position_m"] = [position.get("x"), position.get("y"), position.get("z")]
    return out
