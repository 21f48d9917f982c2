"""Input the database would choke on is a 422, an unreachable database a 503; never a 500."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from sonalyze_storage.main import create_app
from sonalyze_storage.routes import app_error_for
from sonalyze_storage.settings import Settings


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


BAD_BODIES = {
    "nul in a key": ("/v1/devices", '{"device_id": "a\\u0000b"}'),
    "lone surrogate in a key": ("/v1/lobbies", '{"lobby_id": "\\ud800"}'),
    "nul inside json metadata": ("/v1/devices", '{"device_id": "ok-%s", "meta": {"k": ["\\u0000"]}}'),
    "nul in a json key": ("/v1/devices", '{"device_id": "ok-%s", "meta": {"\\u0000": 1}}'),
    "NaN in metrics": ("/v1/simulation-jobs", '{"summary": {"rt60_s": NaN}}'),
    "Infinity as a duration": ("/v1/measurements", '{"job_id": "j", "upload_name": "u", "duration_s": Infinity}'),
    "sample rate beyond 32 bits": ("/v1/measurements", '{"job_id": "j", "upload_name": "u", "sample_rate_hz": 1e10}'),
    "timestamp past year 9999 in UTC": ("/v1/lobbies", '{"lobby_id": "x", "opened_at": "9999-12-31T23:30:00-01:00"}'),
    "timestamp before year 1 in UTC": ("/v1/lobbies", '{"lobby_id": "x", "opened_at": "0001-01-01T00:10:00+01:00"}'),
    "key longer than its column": ("/v1/devices", '{"device_id": "%s"}' % ("x" * 201)),
    "client id with a slash": ("/v1/simulation-jobs", '{"id": "a/b"}'),
    "json nested too deep": ("/v1/devices", '{"device_id": "deep", "meta": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"),
    "body is a list": ("/v1/devices", "[]"),
}


class TestInputTheDatabaseWouldRefuse:
    @pytest.mark.parametrize("path,raw", BAD_BODIES.values(), ids=BAD_BODIES.keys())
    async def test_is_a_422_with_the_error_body(self, client: httpx.AsyncClient, path: str, raw: str) -> None:
        body = raw % unique("d") if "%s" in raw else raw
        response = await client.post(path, content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "bad_request"

    async def test_a_nul_in_a_filter_is_a_422(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/devices?device_id=a%00b")
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"

    async def test_an_encoded_surrogate_in_a_filter_matches_nothing(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/devices?device_id=a%ED%B2%80b")  # decoded with replacement characters
        assert response.status_code == 200
        assert response.json()["total"] == 0

    async def test_a_bad_path_id_is_a_404_or_422_never_500(self, client: httpx.AsyncClient) -> None:
        for record_id in ("%00", "x" * 300, "%C0%AF"):
            response = await client.get(f"/v1/measurements/{record_id}")
            assert response.status_code in (404, 422), (record_id, response.text)

    async def test_valid_extremes_are_stored(self, client: httpx.AsyncClient) -> None:
        body = {"job_id": unique("job"), "upload_name": "é 🎤.wav", "sample_rate_hz": 10_000_000,
                "size_bytes": 2**62, "duration_s": 0, "recorded_at": "9999-12-31T23:59:59Z",
                "meta": {"big": 10**30, "unicode": "ß∂ƒ", "list": [None, True, 1.5]}}  # fmt: skip
        response = await client.post("/v1/measurements", json=body)
        assert response.status_code == 201, response.text
        got = (await client.get(f"/v1/measurements/{response.json()['id']}")).json()
        assert got["meta"] == body["meta"]
        assert got["size_bytes"] == 2**62


class TestDatabaseDown:
    @pytest.fixture(params=["postgresql", "sqlite"])
    async def broken_client(self, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
        # a port nobody listens on, or a file in a directory that does not exist
        url = {
            "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
            "sqlite": f"sqlite+aiosqlite:///{tmp_path}/missing/storage.db",
        }[request.param]
        app = create_app(Settings(database_url=url, run_migrations=False, log_level="CRITICAL"))
        async with LifespanManager(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
                yield client

    async def test_health_reports_the_database_with_503(self, broken_client: httpx.AsyncClient) -> None:
        response = await broken_client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "degraded"
        assert response.json()["database"].startswith("error:")

    async def test_a_request_gets_503_service_unavailable(self, broken_client: httpx.AsyncClient) -> None:
        for response in (
            await broken_client.get("/v1/devices"),
            await broken_client.post("/v1/devices", json={"device_id": "x"}),
        ):
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "service_unavailable"

    async def test_health_is_ok_when_the_database_answers(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": "storage", "database": "ok"}


class FakeDriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


DRIVER_ERRORS = {
    "postgres unique": (IntegrityError("stmt", {}, FakeDriverError("duplicate key", "23505")), 409, "conflict"),
    "sqlite unique": (IntegrityError("stmt", {}, FakeDriverError("UNIQUE constraint failed: devices.device_id")),
                      409, "conflict"),
    "postgres foreign key": (IntegrityError("stmt", {}, FakeDriverError("violates fk", "23503")), 409, "conflict"),
    "sqlite foreign key": (IntegrityError("stmt", {}, FakeDriverError("FOREIGN KEY constraint failed")), 409,
                           "conflict"),
    "not null": (IntegrityError("stmt", {}, FakeDriverError("NOT NULL constraint failed: x.y")), 422, "bad_request"),
    "value too long": (DataError("stmt", {}, FakeDriverError("value too long", "22001")), 422, "bad_request"),
    "bad character": (DBAPIError("stmt", {}, FakeDriverError("invalid byte sequence", "22021")), 422, "bad_request"),
    "connection lost": (OperationalError("stmt", {}, FakeDriverError("connection refused")), 503,
                        "service_unavailable"),
    "socket error": (ConnectionRefusedError("refused"), 503, "service_unavailable"),
}  # fmt: skip


class TestDriverErrorMapping:
    @pytest.mark.parametrize("exc,status,code", DRIVER_ERRORS.values(), ids=DRIVER_ERRORS.keys())
    def test_each_driver_error_gets_its_status_and_code(self, exc: Exception, status: int, code: str) -> None:
        error = app_error_for(exc)
        assert (error.http_status, error.code.value) == (status, code)
