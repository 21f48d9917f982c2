import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sonalyze_protocol.errors import BadRequest, NotFound
from sonalyze_protocol.handlers import (
    GatewayRequest,
    Handler,
    HandlerTable,
    RequestContext,
    gateway_handle_router,
    install_gateway_handle,
)
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import LOG_FORMAT, ContextFilter, RequestLogMiddleware
from sonalyze_protocol.settings import ServiceSettings

TOKEN = "test-token"


class Join(BaseModel):
    code: str


async def join(ctx: RequestContext, data: Join) -> dict[str, Any]:
    if data.code == "NOPE":
        raise NotFound(f"no lobby with code {data.code}")
    if data.code == "BOOM":
        raise RuntimeError("bug")
    return {"code": data.code, "device_id": ctx.device_id}


TABLE = HandlerTable({"lobby.join": Handler(Join, join)})


class StackCalls:
    """A middleware below the fast path: counts the requests that went through the whole stack."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"].state.stack_calls += 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def closing_fails(request: Request, body: GatewayRequest) -> AsyncIterator[RequestContext]:
    """A context whose close fails as a lost database connection does (``OSError``) for ``close.fail``."""
    if body.event == "context.refused":
        raise BadRequest("refused while building the context")
    yield RequestContext(device_id=body.device_id, request_id=body.request_id, state=request.app.state)
    if body.event == "close.fail":
        raise OSError("connection lost")


async def outage(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": {"code": "service_unavailable", "message": "database unavailable"}}, 503)


TABLE_WITH_CLOSE = HandlerTable({"lobby.join": Handler(Join, join), "close.fail": Handler(Join, join)})


def make_app(fast: bool, max_bytes: int = 2048) -> FastAPI:
    """A service as the suite's are built: error handlers, the JSON rule, the request log; with the fast path
    (`install_gateway_handle`) or the documented route alone."""
    app = FastAPI()
    settings = ServiceSettings(internal_auth_token=TOKEN, max_json_body_bytes=max_bytes, max_json_depth=8)
    app.state.settings = settings
    app.state.stack_calls = 0
    install_error_handlers(app)
    app.add_exception_handler(OSError, outage)
    app.add_middleware(StackCalls)
    install_json_body_rule(app, settings)
    app.add_middleware(RequestLogMiddleware)
    if fast:
        install_gateway_handle(app, settings, TABLE_WITH_CLOSE, closing_fails)
    else:
        app.include_router(gateway_handle_router(TABLE_WITH_CLOSE, closing_fails))
    return app


@pytest.fixture(params=[True, False], ids=["fast path", "route"])
async def app(request: pytest.FixtureRequest) -> FastAPI:
    return make_app(request.param)


@pytest.fixture
async def client(app: FastAPI) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        yield c


def envelope(event: str, data: Any) -> dict[str, Any]:
    return {"event": event, "request_id": "r1", "device_id": "dev-1", "data": data}


class TestGatewayHandle:
    async def test_success_returns_data(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/gateway/handle", json=envelope("lobby.join", {"code": "A"}), headers={"X-Internal-Token": TOKEN}
        )
        assert r.status_code == 200
        assert r.json() == {"data": {"code": "A", "device_id": "dev-1"}}

    async def test_missing_token_is_401_with_error_body(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/gateway/handle", json=envelope("lobby.join", {"code": "A"}))
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"

    async def test_unknown_event(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/gateway/handle", json=envelope("lobby.dance", {}), headers={"X-Internal-Token": TOKEN})
        assert r.status_code == 200
        assert r.json()["error"]["code"] == "unknown_event"

    async def test_invalid_data_names_the_field(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/gateway/handle", json=envelope("lobby.join", {}), headers={"X-Internal-Token": TOKEN})
        error = r.json()["error"]
        assert error["code"] == "bad_request"
        assert "data.code" in error["message"]

    async def test_domain_error_is_a_200_reply_with_error(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/gateway/handle", json=envelope("lobby.join", {"code": "NOPE"}), headers={"X-Internal-Token": TOKEN}
        )
        assert r.status_code == 200
        assert r.json()["error"] == {"code": "not_found", "message": "no lobby with code NOPE"}

    async def test_unexpected_exception_becomes_internal_error(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/gateway/handle", json=envelope("lobby.join", {"code": "BOOM"}), headers={"X-Internal-Token": TOKEN}
        )
        assert r.json()["error"]["code"] == "internal_error"

    async def test_malformed_envelope_is_422_bad_request(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/gateway/handle", json={"event": "lobby.join"}, headers={"X-Internal-Token": TOKEN})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "bad_request"
        assert "device_id" in r.json()["error"]["message"]

    async def test_a_context_that_fails_to_close_is_answered_by_the_apps_handler(self, client) -> None:
        r = await client.post(
            "/gateway/handle", json=envelope("close.fail", {"code": "A"}), headers={"X-Internal-Token": TOKEN}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (503, "service_unavailable")

    async def test_an_app_error_while_building_the_context_is_a_reply(self, client) -> None:
        r = await client.post(
            "/gateway/handle", json=envelope("context.refused", {}), headers={"X-Internal-Token": TOKEN}
        )
        assert r.status_code == 200
        assert r.json()["error"] == {"code": "bad_request", "message": "refused while building the context"}

    async def test_the_request_id_header_comes_back(self, client) -> None:
        headers = {"X-Internal-Token": TOKEN, "X-Request-Id": "abc"}
        r = await client.post("/gateway/handle", json=envelope("lobby.join", {"code": "A"}), headers=headers)
        assert r.headers["x-request-id"] == "abc"
        r = await client.post(
            "/gateway/handle", json=envelope("lobby.join", {"code": "A"}), headers=headers | {"X-Request-Id": ""}
        )
        assert len(r.headers["x-request-id"]) == 12

    @pytest.mark.parametrize(
        ("raw", "status", "code"),
        [
            (b'{"event": "lobby.join", "device_id": "d", "data": {"code": NaN}}', 422, "bad_request"),
            (b'{"event": "lobby.join", "device_id": "d", "data": ' + b"[" * 9 + b"]" * 9 + b"}", 422, "bad_request"),
            (b'{"event": "lobby.join", "device_id": "d", "data": {"code": "\\ud800"}}', 422, "bad_request"),
            (
                b'{"event": "lobby.join", "device_id": "d", "data": {"code": "' + b"a" * 3000 + b'"}}',
                413,
                "message_too_large",
            ),
            (b"", 422, "bad_request"),
            (b"[]", 422, "bad_request"),
        ],
        ids=["nan", "too deep", "lone surrogate", "too large", "empty", "not an object"],
    )
    async def test_the_json_rule_holds(self, client, raw: bytes, status: int, code: str) -> None:
        headers = {"X-Internal-Token": TOKEN, "Content-Type": "application/json"}
        r = await client.post("/gateway/handle", content=raw, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)

    async def test_a_body_that_is_not_json_gets_the_routes_answer(self, client) -> None:
        headers = {"X-Internal-Token": TOKEN, "Content-Type": "text/plain"}
        r = await client.post("/gateway/handle", content=b'{"event": "lobby.join"}', headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_request")

    async def test_other_methods_get_the_routes_answer(self, client) -> None:
        r = await client.get("/gateway/handle", headers={"X-Internal-Token": TOKEN})
        assert (r.status_code, r.json()["error"]["code"]) == (405, "bad_request")


class CapturedLines(logging.Handler):
    """The lines as the services write them (`configure_logging`'s format and filter)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.addFilter(ContextFilter("test"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_info_lines() -> Iterator[CapturedLines]:
    """The INFO lines logged inside the block, as the services write them."""
    lines = CapturedLines()
    root = logging.getLogger()
    root.addHandler(lines)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        root.setLevel(level)


class TestFastPath:
    async def test_a_served_event_skips_the_stack_and_logs_one_line_with_its_ids(self) -> None:
        app = make_app(fast=True)
        with captured_info_lines() as lines:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
                r = await client.post("/gateway/handle", json=envelope("lobby.join", {"code": "A"}),
                                      headers={"X-Internal-Token": TOKEN})  # fmt: skip
        assert r.json() == {"data": {"code": "A", "device_id": "dev-1"}}
        assert app.state.stack_calls == 0
        (line,) = [line for line in lines.lines if " sonalyze." in line]
        assert "sonalyze.handle request_id=r1 device_id=dev-1 event=lobby.join outcome=ok duration_ms=" in line

    async def test_what_it_does_not_serve_goes_through_the_stack(self) -> None:
        app = make_app(fast=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            await client.post("/gateway/handle", json=envelope("lobby.join", {"code": "A"}))  # no token
            await client.post("/gateway/handle", json={"event": "x"}, headers={"X-Internal-Token": TOKEN})
            await client.get("/gateway/handle")
        assert app.state.stack_calls == 3

    async def test_the_route_stays_documented(self) -> None:
        app = make_app(fast=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            spec = (await client.get("/openapi.json")).json()
        assert "post" in spec["paths"]["/gateway/handle"]


class TestHandlerTable:
    def test_events_lists_the_table(self) -> None:
        assert TABLE.events == {"lobby.join"}


class TestGatewayHandleBatch:
    """``/gateway/handle_batch``: each event answered as ``/gateway/handle`` answers it alone, in order, whether
    the fast path or the route serves it."""

    EVENTS = (
        ("lobby.join", {"code": "A"}),
        ("lobby.join", {"code": "NOPE"}),
        ("lobby.dance", {}),
        ("lobby.join", {}),
        ("lobby.join", {"code": "BOOM"}),
        ("close.fail", {"code": "A"}),
        ("context.refused", {}),
    )

    async def test_each_event_gets_what_it_would_get_alone(self, client: httpx.AsyncClient) -> None:
        headers = {"X-Internal-Token": TOKEN}
        alone = []
        for event, data in self.EVENTS:
            r = await client.post("/gateway/handle", json=envelope(event, data), headers=headers)
            alone.append({"status": r.status_code, "reply": r.json()})
        events = [envelope(event, data) | {"request_id": f"r{i}"} for i, (event, data) in enumerate(self.EVENTS)]
        r = await client.post("/gateway/handle_batch", json={"events": events}, headers=headers)
        assert r.status_code == 200
        assert r.json() == {"replies": alone}
        assert [a["status"] for a in alone] == [200, 200, 200, 200, 200, 503, 200]  # the cases differ

    async def test_a_malformed_batch_gets_the_routes_answer(self, client: httpx.AsyncClient) -> None:
        headers = {"X-Internal-Token": TOKEN}
        for body in ({"events": []}, {"events": [{"event": "lobby.join"}]}, {"event": "lobby.join"}):
            r = await client.post("/gateway/handle_batch", json=body, headers=headers)
            assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_request"), body
        r = await client.post("/gateway/handle_batch", json={"events": [envelope("lobby.join", {"code": "A"})]})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")

    async def test_each_event_logs_its_own_line_with_its_ids(self) -> None:
        app = make_app(fast=True)
        events = [{"event": "lobby.join", "request_id": f"r{i}", "device_id": f"dev-{i}", "data": {"code": "A"}}
                  for i in range(3)]  # fmt: skip
        with captured_info_lines() as lines:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
                r = await c.post("/gateway/handle_batch", json={"events": events}, headers={"X-Internal-Token": TOKEN})
        assert [reply["reply"]["data"]["device_id"] for reply in r.json()["replies"]] == ["dev-0", "dev-1", "dev-2"]
        served = sorted(line for line in lines.lines if "event=lobby.join" in line)
        assert len(served) == 3
        for i, line in enumerate(served):
            assert f"request_id=r{i} device_id=dev-{i}" in line, line
        assert app.state.stack_calls == 0  # the fast path served it
