from sonalyze_devices.room import default_layout, layout_from_profile

PROFILE = {
    "id": "office",
    "request": {
        "room": {
            "type": "shoebox",
            "dimensions_m": [5.0, 4.0, 3.0],
            "default_material": {"name": "hard_surface"},
            "surfaces": {"floor": {"name": "carpet_6mm_open_cell_foam"}},
        }
    },
}


def inside(position: list[float], dims: tuple[float, float, float]) -> bool:
    return all(0 < p < d for p, d in zip(position, dims, strict=True))


class TestLayouts:
    def test_default_room_places_every_slot_inside(self) -> None:
        layout = default_layout(2, 3)
        assert set(layout.positions_m) == {"speaker_1", "speaker_2", "mic_1", "mic_2", "mic_3"}
        assert all(inside(p, (6.0, 4.0, 2.8)) for p in layout.positions_m.values())

    def test_profile_room_keeps_its_geometry_and_materials(self) -> None:
        layout = layout_from_profile(PROFILE, 1, 2)
        assert layout.vertices_m == [[0.0, 0.0], [5.0, 0.0], [5.0, 4.0], [0.0, 4.0]]
        assert layout.height_m == 3.0
        assert layout.materials["surfaces"]["floor"]["name"] == "carpet_6mm_open_cell_foam"
        assert all(inside(p, (5.0, 4.0, 3.0)) for p in layout.positions_m.values())

    def test_snapshot_lists_positions_by_slot(self) -> None:
        snapshot = layout_from_profile(PROFILE, 1, 1).snapshot()
        assert {p["slot_id"] for p in snapshot["positions"]} == {"speaker_1", "mic_1"}
        assert snapshot["height_m"] == 3.0

    def test_simulation_request_names_sources_and_microphones_by_slot(self) -> None:
        request = default_layout(1, 2).simulation_request(
            [("speaker_1", "mic_1"), ("speaker_1", "mic_2")], sample_rate_hz=48000
        )
        assert [s["id"] for s in request["sources"]] == ["speaker_1"]
        assert [m["id"] for m in request["microphones"]] == ["mic_1", "mic_2"]
        assert request["room"]["type"] == "polygon"
