"""An outage answers service_unavailable through every way in: HTTP routes, gateway events, one coroutine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from sonalyze_db import (
    guard_database,
    guard_handlers,
    install_outage_handlers,
    is_foreign_key_violation,
    is_unique_violation,
    make_engine,
)
from sonalyze_protocol.errors import ServiceUnavailable
from sonalyze_protocol.handlers import GatewayRequest, Handler, HandlerTable

DOWN_URL = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


async def query_a_database_that_is_down() -> None:
    engine = make_engine(DOWN_URL)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


class Empty(BaseModel):
    pass


async def test_a_guarded_coroutine_raises_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="database unavailable"):
        await guard_database(query_a_database_that_is_down)()


async def test_every_guarded_event_answers_service_unavailable() -> None:
    async def handler(_context: None, _data: Empty) -> None:
        await query_a_database_that_is_down()

    handlers = {"x.down": Handler(Empty, handler)}
    unguarded = await HandlerTable(handlers).dispatch(None, GatewayRequest(event="x.down", device_id="d"))
    guarded = await HandlerTable(guard_handlers(handlers)).dispatch(None, GatewayRequest(event="x.down", device_id="d"))
    assert unguarded["error"]["code"] == "internal_error"  # what the lobby's measurement.* answered before
    assert guarded["error"]["code"] == "service_unavailable"


async def test_an_http_route_answers_503() -> None:
    app = FastAPI()
    install_outage_handlers(app)

    @app.get("/x")
    async def route() -> None:
        await query_a_database_that_is_down()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/x")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


async def test_sqlite_violations_are_recognised(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/v.db")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
            await connection.execute(text("CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id))"))
        for statement, unique in (("INSERT INTO c VALUES (1, 99)", False), ("INSERT INTO p VALUES (1), (1)", True)):
            with pytest.raises(IntegrityError) as raised:
                async with engine.begin() as connection:
                    await connection.execute(text(statement))
            assert (is_unique_violation(raised.value), is_foreign_key_violation(raised.value)) == (unique, not unique)
    finally:
        await engine.dispose()


def test_an_outage_is_not_a_violation() -> None:
    error = OperationalError("stmt", {}, ConnectionRefusedError("refused"))
    assert not is_unique_violation(error)
    assert not is_foreign_key_violation(error)
