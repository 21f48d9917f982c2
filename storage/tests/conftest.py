"""Storage test fixtures: one migrated database per session (PostgreSQL with TEST_DATABASE_URL, else
SQLite), the app in-process with its lifespan, and builders that create records with unique keys so
tests never see each other's rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from sonalyze_storage.main import create_app
from sonalyze_storage.settings import Settings


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
async def database_url(make_database_url: Callable[[str], Awaitable[str]]) -> str:
    return await make_database_url("storage")


@pytest.fixture(scope="session")
async def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, run_migrations=True, log_level="WARNING")


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://storage") as client,
    ):
        yield client


async def post_ok(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


@dataclass
class Builders:
    """``await make.lobby()`` etc.: a stored record with fresh keys; keyword arguments override fields."""

    client: httpx.AsyncClient

    async def device(self, **fields: Any) -> dict[str, Any]:
        return await post_ok(self.client, "/v1/devices", {"device_id": unique("dev"), **fields})

    async def lobby(self, **fields: Any) -> dict[str, Any]:
        return await post_ok(self.client, "/v1/lobbies", {"lobby_id": unique("lobby"), **fields})

    async def participant(self, **fields: Any) -> dict[str, Any]:
        if "lobby_id" not in fields:
            fields["lobby_id"] = (await self.lobby())["lobby_id"]
        return await post_ok(self.client, "/v1/participants", {"device_id": unique("dev"), **fields})

    async def measurement(self, **fields: Any) -> dict[str, Any]:
        body = {"job_id": unique("job"), "upload_name": unique("up") + ".wav", **fields}
        return await post_ok(self.client, "/v1/measurements", body)

    async def analysis_output(self, **fields: Any) -> dict[str, Any]:
        if "measurement_id" not in fields and "job_id" not in fields:
            fields["measurement_id"] = (await self.measurement())["id"]
        return await post_ok(self.client, "/v1/analysis-outputs", {"analysis_run": unique("run"), **fields})

    async def simulation_job(self, **fields: Any) -> dict[str, Any]:
        return await post_ok(self.client, "/v1/simulation-jobs", {"id": unique("sim"), **fields})

    async def simulation_result(self, **fields: Any) -> dict[str, Any]:
        if "job_id" not in fields:
            fields["job_id"] = (await self.simulation_job())["id"]
        return await post_ok(self.client, "/v1/simulation-results", {"id": unique("res"), **fields})


@pytest.fixture
def make(client: httpx.AsyncClient) -> Builders:
    return Builders(client)
