import pytest

from sonalyze_protocol.errors import (
    HTTP_STATUS_BY_CODE,
    AppError,
    Conflict,
    ErrorCode,
    InvalidState,
    RateLimited,
    code_for_status,
)


class TestAppError:
    def test_every_code_has_an_http_status(self) -> None:
        assert set(HTTP_STATUS_BY_CODE) == set(ErrorCode)

    def test_subclass_fixes_code_and_status(self) -> None:
        err = InvalidState("wrong step")
        assert (err.code, err.http_status) == (ErrorCode.INVALID_STATE, 409)

    def test_extra_fields_go_into_the_body(self) -> None:
        body = RateLimited("slow down", retry_after_ms=120).to_body()
        assert body == {"error": {"code": "rate_limited", "message": "slow down", "retry_after_ms": 120}}

    def test_round_trip_through_an_error_object(self) -> None:
        again = AppError.from_error(Conflict("taken", slot="mic_1").to_error())
        assert (again.code, again.message, again.extra) == (ErrorCode.CONFLICT, "taken", {"slot": "mic_1"})

    def test_unknown_code_from_another_service_becomes_internal_error(self) -> None:
        assert AppError.from_error({"code": "weird", "message": "?"}).code == ErrorCode.INTERNAL_ERROR


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "not_found"),
        (413, "message_too_large"),
        (418, "bad_request"),
        (502, "internal_error"),
        (503, "service_unavailable"),
    ],
)
def test_code_for_status(status: int, code: str) -> None:
    assert code_for_status(status) == code
