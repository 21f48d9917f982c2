import pytest

from sonalyze_protocol.envelope import (
    MessageError,
    dumps,
    error_frame,
    event_frame,
    parse_client_message,
    response_frame,
)
from sonalyze_protocol.errors import NotFound


class TestParseClientMessage:
    def test_full_message(self) -> None:
        msg = parse_client_message('{"event": "lobby.join", "request_id": "7", "data": {"code": "ABC"}}')
        assert (msg.event, msg.request_id, msg.data) == ("lobby.join", "7", {"code": "ABC"})

    def test_missing_data_becomes_empty_object(self) -> None:
        assert parse_client_message(b'{"event": "lobby.create"}').data == {}

    def test_integer_request_id_is_kept(self) -> None:
        assert parse_client_message('{"event": "x", "request_id": 3}').request_id == 3

    @pytest.mark.parametrize(
        ("raw", "fragment"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "JSON object"),
            ('"text"', "JSON object"),
            ('{"data": {}}', "'event'"),
            ('{"event": 5}', "'event' must be"),
            ('{"event": ""}', "'event' must be"),
        ],
    )
    def test_malformed_messages_say_what_is_wrong(self, raw: str, fragment: str) -> None:
        with pytest.raises(MessageError) as info:
            parse_client_message(raw)
        assert fragment in info.value.message
        assert info.value.code == "bad_request"

    def test_non_object_data_keeps_event_and_request_id_for_the_reply(self) -> None:
        with pytest.raises(MessageError) as info:
            parse_client_message('{"event": "lobby.join", "request_id": "9", "data": [1]}')
        assert (info.value.event, info.value.request_id) == ("lobby.join", "9")


class TestFrames:
    def test_response_frame_echoes_event_and_request_id(self) -> None:
        assert response_frame("lobby.create", "1", {"code": "ABC234"}) == {
            "type": "response",
            "event": "lobby.create",
            "request_id": "1",
            "data": {"code": "ABC234"},
        }

    def test_event_frame(self) -> None:
        assert event_frame("lobby.updated", {"a": 1}) == {"type": "event", "event": "lobby.updated", "data": {"a": 1}}

    def test_error_frame_carries_code_message_and_extra(self) -> None:
        frame = error_frame("lobby.get", "2", NotFound("no lobby", lobby_id="x"))
        assert frame["type"] == "error"
        assert frame["error"] == {"code": "not_found", "message": "no lobby", "lobby_id": "x"}

    def test_dumps_is_compact_json_text(self) -> None:
        assert dumps({"a": [1, None]}) == '{"a":[1,null]}'
