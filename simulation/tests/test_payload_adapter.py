"""The app's shapes are accepted as they come."""

from __future__ import annotations

from sonalyze_simulation.payload_adapter import adapt_request
from sonalyze_simulation.schemas import PolygonRoom, SimulationRequest

APP_ROOM = {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}


class TestAdaptRequest:
    def test_map_room_from_the_spec_becomes_a_polygon(self) -> None:
        body = {
            "map": {"room": dict(APP_ROOM)},
            "sources": [{"id": "s1", "position_m": [2.5, 0.5, 1.2]}],
            "microphones": [{"id": "m1", "position_m": [2.5, 3.5, 1.2]}],
        }
        request = SimulationRequest.model_validate(body)
        assert isinstance(request.room, PolygonRoom)
        assert request.room.vertices == [(0.0, 0.0), (5.0, 0.0), (5.0, 4.0), (0.0, 4.0)]
        assert request.room.height_m == 2.5

    def test_app_room_keys_the_simulation_does_not_use_are_dropped(self) -> None:
        room = adapt_request({"room": {**APP_ROOM, "name": "Kitchen", "unit": "m", "furniture": []}})["room"]
        assert room == {"type": "polygon", **APP_ROOM}

    def test_closed_ring_loses_its_repeated_vertex(self) -> None:
        room = adapt_request({"room": {**APP_ROOM, "vertices": [*APP_ROOM["vertices"], [0, 0]]}})["room"]
        assert room["vertices"] == APP_ROOM["vertices"]

    def test_vertex_objects_and_aliases(self) -> None:
        room = adapt_request(
            {"room": {"vertices": [{"x": 0, "y": 0}, {"x": 3, "y": 0}, {"x": 0, "y": 3}], "height": 3}}
        )["room"]
        assert room == {"type": "polygon", "vertices": [[0, 0], [3, 0], [0, 3]], "height_m": 3}

    def test_shorthand_materials(self) -> None:
        room = adapt_request(
            {"room": {**APP_ROOM, "material": "carpet", "surfaces": {"floor": 0.3, "walls": [None, "glass"]}}}
        )["room"]
        assert room["default_material"] == {"name": "carpet"}
        assert room["surfaces"] == {"floor": {"absorption": 0.3}, "walls": {"1": {"name": "glass"}}}

    def test_position_alias_and_object(self) -> None:
        body = adapt_request({"sources": [{"id": "a", "position": {"x": 1, "y": 2, "z": 1.5}}]})
        assert body["sources"] == [{"id": "a", "position_m": [1, 2, 1.5]}]

    def test_typed_room_keeps_unknown_keys_for_validation_to_refuse(self) -> None:
        room = adapt_request({"room": {"type": "shoebox", "dimensions_m": [5, 4, 3], "colour": "red"}})["room"]
        assert room["colour"] == "red"

    def test_non_dict_passes_through(self) -> None:
        assert adapt_request([1, 2]) == [1, 2]
