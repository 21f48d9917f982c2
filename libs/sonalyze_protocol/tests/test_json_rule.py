"""The suite's one JSON rule: size, nesting, finite numbers, valid text; and client-safe error messages."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from sonalyze_protocol.envelope import MessageError, parse_client_message
from sonalyze_protocol.errors import BadRequest, client_text
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import JsonBodyRule, parse_json

BAD_DOCUMENTS = {
    "nan": b'{"x": NaN}',
    "infinity": b'{"x": Infinity}',
    "overflowing float": b'{"x": 1e999}',
    "500-digit integer": b'{"x": ' + b"9" * 500 + b"}",
    "lone surrogate": b'{"x": "\\ud800"}',
    "invalid utf-8": b'{"x": "\xff"}',
    "too deep": b'{"x": ' + b"[" * 40 + b"]" * 40 + b"}",
    "far too deep": b"[" * 900 + b"]" * 900,
}


@pytest.mark.parametrize("raw", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_documents_that_break_the_rule_are_bad_requests(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_json(raw)


def test_ordinary_documents_pass() -> None:
    assert parse_json(b'{"a": [1, 2.5, -3e10, "\xc3\xa9", {"b": null}], "c": true}')["c"] is True
    assert parse_json(b"[" * 32 + b"]" * 32) is not None


def make_app(max_bytes: int = 2048) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(JsonBodyRule, max_bytes=max_bytes, max_depth=32)
    seen: list[object] = []

    @app.post("/things")
    async def things(body: dict) -> dict:  # type: ignore[type-arg]
        seen.append(body)
        return {"n": len(seen)}

    @app.post("/raw")
    async def raw(request: Request) -> dict:  # type: ignore[type-arg]
        return {"n_bytes": len(await request.body())}

    app.state.seen = seen
    return app


class TestMiddleware:
    async def request(self, app: FastAPI, body: bytes, content_type: str | None = "application/json",
                      path: str = "/things") -> httpx.Response:  # fmt: skip
        headers = {"content-type": content_type} if content_type else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, content=body, headers=headers)

    @pytest.mark.parametrize("raw", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
    @pytest.mark.parametrize("content_type", ["application/json", None])
    async def test_a_bad_body_gets_422_and_never_reaches_the_handler(self, raw: bytes, content_type: str) -> None:
        app = make_app()
        response = await self.request(app, raw, content_type)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "bad_request"
        assert app.state.seen == []

    async def test_a_body_over_the_limit_gets_413(self) -> None:
        app = make_app(max_bytes=2048)
        response = await self.request(app, b'{"x": "' + b"a" * 3000 + b'"}')
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "message_too_large"
        assert app.state.seen == []

    async def test_a_good_body_reaches_the_handler_unchanged(self) -> None:
        app = make_app()
        response = await self.request(app, b'{"x": [1, 2, {"y": "z"}]}')
        assert response.status_code == 200
        assert app.state.seen == [{"x": [1, 2, {"y": "z"}]}]

    async def test_a_raw_upload_streams_past_whatever_its_size(self) -> None:
        response = await self.request(make_app(max_bytes=2048), b"RIFF" + b"\0" * 10_000, None, "/raw")
        assert response.json() == {"n_bytes": 10_004}
        response = await self.request(make_app(max_bytes=2048), b"RIFF" + b"\0" * 10_000, "audio/wav", "/raw")
        assert response.json() == {"n_bytes": 10_004}


class TestWebSocketMessages:
    def test_deep_data_is_a_bad_request_that_still_echoes_event_and_request_id(self) -> None:
        raw = '{"event": "lobby.join", "request_id": "r1", "data": {"x": ' + "[" * 300 + "]" * 300 + "}}"
        with pytest.raises(MessageError) as caught:
            parse_client_message(raw)
        assert (caught.value.event, caught.value.request_id) == ("lobby.join", "r1")
        assert "deeper than" in caught.value.message

    def test_a_huge_event_name_is_refused_without_being_echoed(self) -> None:
        with pytest.raises(MessageError) as caught:
            parse_client_message('{"event": "' + "e" * 60_000 + '"}')
        assert caught.value.event is None
        assert len(caught.value.message) < 100

    def test_non_finite_numbers_are_refused(self) -> None:
        with pytest.raises(MessageError):
            parse_client_message('{"event": "x", "data": {"v": NaN}}')


class TestClientText:
    def test_server_paths_are_replaced(self) -> None:
        text = client_text("Error opening '/tmp/pytest-of-root/x/tmp/abc.part': Format not recognised.")
        assert "/tmp" not in text and "<path>" in text
        assert client_text("see /v1/measurement/signal") == "see /v1/measurement/signal"

    def test_long_messages_are_cut(self) -> None:
        assert len(BadRequest("x" * 100_000).message) <= 500
