from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from sonalyze_protocol.errors import NotFound
from sonalyze_protocol.handlers import Handler, HandlerTable, RequestContext, gateway_handle_router, plain_context
from sonalyze_protocol.http_errors import install_error_handlers
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


@pytest.fixture
async def client() -> Any:
    app = FastAPI()
    app.state.settings = ServiceSettings(internal_auth_token=TOKEN)
    install_error_handlers(app)
    app.include_router(gateway_handle_router(TABLE, plain_context))
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


class TestHandlerTable:
    def test_events_lists_the_table(self) -> None:
        assert TABLE.events == {"lobby.join"}
