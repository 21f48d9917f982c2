"""Input models: the room snapshot's shape, lobby.get's one-of rule, codes (no database)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from sonalyze_lobby.codes import CODE_ALPHABET, generate_code, is_well_formed, normalize_code
from sonalyze_lobby.schemas import LobbyGet, RoleAssignBody, Room, polygon_area_m2

ROOM = {"vertices": [[0, 0], [5, 0], [5, 4], [0, 4]], "height_m": 2.5}


class TestRoom:
    def test_minimal_room(self) -> None:
        room = Room.model_validate(ROOM)
        assert room.height_m == 2.5 and len(room.vertices) == 4

    def test_materials_positions_and_unknown_keys_are_kept(self) -> None:
        data = {
            **ROOM,
            "materials": {"walls": {"absorption": 0.2}},
            "positions": [{"slot_id": "spk_1", "position_m": [1, 2, 1.2]}],
            "name": "kitchen",
        }
        dumped = Room.model_validate(data).model_dump(mode="json", exclude_none=True)
        assert dumped["materials"] == {"walls": {"absorption": 0.2}}
        assert dumped["positions"] == [{"slot_id": "spk_1", "position_m": [1.0, 2.0, 1.2]}]
        assert dumped["name"] == "kitchen"

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"vertices": [[0, 0], [1, 0]]}, "vertices"),
            ({"vertices": [[0, 0], [1, 0], [2, 0]]}, "vertices"),  # collinear: no area
            ({"vertices": [[0, 0], [1], [1, 1]]}, "vertices"),
            ({"vertices": [[0, 0], [1, 0, 0], [1, 1]]}, "vertices"),
            ({"vertices": [[0, 0], ["a", 0], [1, 1]]}, "vertices"),
            ({"vertices": [[0, 0], [math.inf, 0], [1, 1]]}, "vertices"),
            ({"vertices": [[0, 0], [1e9, 0], [1, 1]]}, "vertices"),
            ({"vertices": "square"}, "vertices"),
            ({"height_m": 0}, "height_m"),
            ({"height_m": -2}, "height_m"),
            ({"height_m": math.nan}, "height_m"),
            ({"materials": ["carpet"]}, "materials"),
            ({"positions": [{"slot_id": "", "position_m": [1, 1]}]}, "positions"),
            ({"positions": [{"slot_id": "a", "position_m": [1]}]}, "positions"),
        ],
    )
    def test_invalid_room_names_the_field(self, change: dict, field: str) -> None:
        with pytest.raises(ValidationError) as info:
            Room.model_validate({**ROOM, **change})
        assert info.value.errors()[0]["loc"][0] == field

    @pytest.mark.parametrize("missing", ["vertices", "height_m"])
    def test_required_fields(self, missing: str) -> None:
        with pytest.raises(ValidationError):
            Room.model_validate({k: v for k, v in ROOM.items() if k != missing})

    def test_polygon_area(self) -> None:
        assert polygon_area_m2([[0, 0], [5, 0], [5, 4], [0, 4]]) == 20.0
        assert polygon_area_m2([[0, 4], [5, 4], [5, 0], [0, 0]]) == 20.0  # either winding


class TestLobbyGet:
    def test_needs_exactly_one_of_id_or_code(self) -> None:
        with pytest.raises(ValidationError, match="exactly one"):
            LobbyGet()
        with pytest.raises(ValidationError, match="exactly one"):
            LobbyGet(lobby_id="3f2b8a4e-9d7c-4e1f-a0b2-5c6d7e8f9a0b", code="ABCDEF")


class TestRoleAssignBody:
    def test_unknown_role_is_refused(self) -> None:
        with pytest.raises(ValidationError):
            RoleAssignBody(target_device_id="x", role="conductor")

    def test_slot_is_trimmed_and_empty_slot_refused(self) -> None:
        assert RoleAssignBody(target_device_id="x", role="speaker", role_slot_id=" spk_1 ").role_slot_id == "spk_1"
        with pytest.raises(ValidationError):
            RoleAssignBody(target_device_id="x", role="speaker", role_slot_id="  ")

    @pytest.mark.parametrize("slot", ["spk 1", "spk/1", "a" * 48, "ü"])
    def test_slot_must_be_plain_and_short(self, slot: str) -> None:
        with pytest.raises(ValidationError):
            RoleAssignBody(target_device_id="x", role="speaker", role_slot_id=slot)


class TestCodes:
    def test_alphabet_has_no_look_alikes(self) -> None:
        assert not set(CODE_ALPHABET) & set("0O1IL")
        assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 31

    def test_generated_codes_are_well_formed(self) -> None:
        assert all(is_well_formed(generate_code()) for _ in range(1000))

    def test_normalize(self) -> None:
        assert normalize_code("  abc234\n") == "ABC234"
        assert not is_well_formed(normalize_code("abc10o"))
        assert not is_well_formed("ABC23")


class TestPublicBaseUrl:
    def test_trailing_slash_is_dropped_and_empty_means_a_path(self) -> None:
        from sonalyze_lobby.settings import Settings

        assert Settings(public_base_url="https://sonalyze.example/ ").public_base_url == "https://sonalyze.example"
        assert Settings(public_base_url="").public_base_url == ""

    def test_anything_but_http_is_refused(self) -> None:
        from pydantic import ValidationError

        from sonalyze_lobby.settings import Settings

        with pytest.raises(ValidationError, match="PUBLIC_BASE_URL"):
            Settings(public_base_url="gateway:8000")
