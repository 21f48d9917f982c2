"""How service replies become frames' data or errors, and which request ids travel as headers."""

from __future__ import annotations

import pytest

from sonalyze_gateway.http_client import _reply_data, header_safe
from sonalyze_gateway.router import Target
from sonalyze_protocol.errors import AppError


class TestReplyData:
    def test_data_reply_gives_its_data(self) -> None:
        assert _reply_data(Target.LOBBY, 200, b'{"data": {"code": "ABC234"}}') == {"code": "ABC234"}

    def test_error_reply_raises_that_error_with_extras(self) -> None:
        with pytest.raises(AppError) as info:
            _reply_data(Target.LOBBY, 200, b'{"error": {"code": "conflict", "message": "taken", "slot": "s1"}}')
        assert info.value.to_error() == {"code": "conflict", "message": "taken", "slot": "s1"}

    def test_unknown_error_code_becomes_internal_error(self) -> None:
        with pytest.raises(AppError) as info:
            _reply_data(Target.LOBBY, 200, b'{"error": {"code": "weird", "message": "?"}}')
        assert info.value.code == "internal_error"

    @pytest.mark.parametrize("raw", [b"not json", b"[1]", b'"x"'])
    def test_a_reply_of_the_wrong_shape_is_internal_error(self, raw: bytes) -> None:
        with pytest.raises(AppError) as info:
            _reply_data(Target.SIMULATION, 200, raw)
        assert info.value.code == "internal_error"

    @pytest.mark.parametrize(
        ("status", "code"),
        [(401, "unauthorized"), (404, "not_found"), (500, "internal_error"), (503, "service_unavailable")],
    )
    def test_transport_statuses_map_to_codes(self, status: int, code: str) -> None:
        with pytest.raises(AppError) as info:
            _reply_data(Target.MEASUREMENT, status, b"<html>oops</html>")
        assert info.value.code == code


class TestHeaderSafe:
    @pytest.mark.parametrize(("value", "expected"), [("req-1", "req-1"), (7, "7"), (None, None)])
    def test_plain_ids_pass(self, value: object, expected: str | None) -> None:
        assert header_safe(value) == expected  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "é", "x" * 129])
    def test_ids_unfit_for_a_header_are_left_out(self, value: str) -> None:
        assert header_safe(value) is None
