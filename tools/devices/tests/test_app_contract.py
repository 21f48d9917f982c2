"""The app's hard casts as the virtual phones check them (spec phone-app.md sections 2 and 3)."""

from __future__ import annotations

from typing import Any

import pytest

from sonalyze_devices.app_contract import PUSHES, RESPONSES, HardCastError, check_push, check_response, hard

LOBBY = {"code": "K7QX2M", "lobby_id": "l-1", "admin_device_id": "host",
         "participants": [{"device_id": "host", "role": "none", "role_slot_id": None, "role_slot_label": None}]}  # fmt: skip


class TestAnswers:
    def test_a_complete_lobby_passes(self) -> None:
        for event in ("lobby.create", "lobby.join", "lobby.get"):
            check_response(event, LOBBY)

    @pytest.mark.parametrize("field", ["code", "lobby_id", "admin_device_id"])
    def test_missing_hard_field_of_lobby_create_throws(self, field: str) -> None:
        with pytest.raises(HardCastError, match=field):
            check_response("lobby.create", {k: v for k, v in LOBBY.items() if k != field})

    @pytest.mark.parametrize(("change", "fragment"), [
        ({"device_id": None}, "device_id"), ({"role": 3}, "role"), ({"role": "drummer"}, "drummer"),
        ({"role_slot_id": 5}, "role_slot_id"),
    ])  # fmt: skip
    def test_participant_fields(self, change: dict[str, Any], fragment: str) -> None:
        lobby = {**LOBBY, "participants": [{**LOBBY["participants"][0], **change}]}
        with pytest.raises(HardCastError, match=fragment):
            check_response("lobby.get", lobby)

    def test_analysis_results_must_be_an_object(self) -> None:
        check_response("analysis.run", {"results": {"rt": {}}})
        with pytest.raises(HardCastError, match="results"):
            check_response("analysis.run", {"results": [{"rt60_s": 1}]})

    def test_answers_the_app_does_not_read_need_nothing(self) -> None:
        check_response("role.assign", None)
        check_response("measurement.ready", {"session_id": "s"})


class TestPushes:
    def test_stop_recording_without_upload_endpoint_throws(self) -> None:
        with pytest.raises(HardCastError, match="upload_endpoint"):
            check_push("measurement.stop_recording", {"session_id": "s", "speaker_slot_id": "speaker-1"})

    def test_optional_field_present_with_the_wrong_type_throws(self) -> None:
        check_push("measurement.session_complete", {"session_id": "s"})
        with pytest.raises(HardCastError, match="completed_speakers"):
            check_push("measurement.session_complete", {"session_id": "s", "completed_speakers": "speaker-1"})

    def test_a_boolean_is_not_a_number(self) -> None:
        with pytest.raises(HardCastError):
            check_push("measurement.phase_update", {"total_microphones": True})

    def test_pushes_the_app_does_not_handle_are_not_checked(self) -> None:
        check_push("measurement.analysis_complete", {"anything": 1})


def test_hard_read_throws_like_the_app() -> None:
    assert hard({"session_id": "s"}, "session_id") == "s"
    with pytest.raises(HardCastError):
        hard({"session_id": None}, "session_id")


def test_tables_name_every_row_of_the_spec() -> None:
    assert len(RESPONSES) == 17  # section 2: every event the app sends
    assert len(PUSHES) == 15  # section 3: lobby.step_update and lobby.profile_update share one row
