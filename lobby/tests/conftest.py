"""Fixtures of the lobby tests: a migrated database (SQLite, or PostgreSQL with TEST_DATABASE_URL),
a fake gateway that records pushes, and a way to act as a device in the service layer."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sonalyze_db import RowReader, make_engine, make_sessionmaker
from sonalyze_lobby import migrations
from sonalyze_lobby.broadcast import Broadcaster
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.broadcast import BroadcastClient

TOKEN = "test-internal-token"
GATEWAY_URL = "http://gateway.test"


@dataclass
class RecordedPush:
    device_ids: list[str]
    event: str
    data: dict[str, Any]


@dataclass
class FakeGateway:
    """Answers ``/internal/broadcast`` like the gateway (everyone delivered) and keeps what it was sent."""

    pushes: list[RecordedPush] = field(default_factory=list)
    failing: bool = False
    tokens: list[str | None] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.failing:
            raise httpx.ConnectError("gateway is down", request=request)
        body = json.loads(request.content)
        self.tokens.append(request.headers.get("x-internal-token"))
        self.pushes.append(RecordedPush(body["device_ids"], body["event"], body["data"]))
        return httpx.Response(200, json={"delivered": body["device_ids"], "offline": []})

    def to(self, device_id: str, event: str = "lobby.updated") -> list[dict[str, Any]]:
        """The data of every push of ``event`` that reached ``device_id``, in order."""
        return [p.data for p in self.pushes if p.event == event and device_id in p.device_ids]

    def types_to(self, device_id: str) -> list[str]:
        return [d["type"] for d in self.to(device_id)]

    def clear(self) -> None:
        self.pushes.clear()


@pytest.fixture(scope="session")
async def database_url(make_database_url: Callable[[str], Awaitable[str]]) -> str:
    return await make_database_url("lobby")


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrations.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        internal_auth_token=TOKEN,
        gateway_url=GATEWAY_URL,
        run_migrations=True,
        log_level="WARNING",
    )


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def broadcaster(gateway: FakeGateway, settings: Settings) -> AsyncIterator[Broadcaster]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway.handler)) as client:
        yield Broadcaster(BroadcastClient(GATEWAY_URL, settings.internal_auth_token, client))


@pytest.fixture(scope="session")
async def rows(engine: AsyncEngine) -> AsyncIterator[RowReader]:
    """The lobby's hot reads as the service runs them (on the driver: sqlite3 or asyncpg)."""
    reader = RowReader(engine)
    yield reader
    await reader.aclose()


@pytest.fixture
def as_device(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, broadcaster: Broadcaster, rows: RowReader
) -> Callable[[str], Any]:
    """``async with as_device("phone-a") as ctx: await service.create_lobby(ctx)``: one session per use."""

    @asynccontextmanager
    async def acting(device_id: str) -> AsyncIterator[LobbyContext]:
        async with sessionmaker() as session:
            yield LobbyContext(
                device_id=device_id,
                request_id=None,
                session_source=session,
                rows=rows,
                settings=settings,
                broadcaster=broadcaster,
            )

    return acting


@pytest.fixture
def run(as_device: Callable[[str], Any]) -> Callable[..., Awaitable[Any]]:
    """``await run("phone-a", service.join_lobby, code)``: one use case as one device."""

    async def call(device_id: str, use_case: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        async with as_device(device_id) as ctx:
            return await use_case(ctx, *args, **kwargs)

    return call


@pytest.fixture
def devices() -> Callable[[int], list[str]]:
    """Fresh device ids, so tests sharing the session's database never meet."""

    def make(n: int) -> list[str]:
        prefix = uuid.uuid4().hex[:8]
        return [f"dev-{prefix}-{i}" for i in range(n)]

    return make


@pytest.fixture
async def app(settings: Settings, broadcaster: Broadcaster) -> AsyncIterator[Any]:
    """The real app with its lifespan run; pushes go to the fake gateway."""
    from asgi_lifespan import LifespanManager

    from sonalyze_lobby.main import create_app

    application = create_app(settings)
    async with LifespanManager(application):
        application.state.lobby.broadcaster = broadcaster
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client with the internal token; add ``X-Device-Id`` per request."""
    transport = httpx.ASGITransport(app=app)
    headers = {"X-Internal-Token": TOKEN}
    async with httpx.AsyncClient(transport=transport, base_url="http://lobby", headers=headers) as c:
        yield c


@pytest.fixture
def handle(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await handle("phone", "lobby.join", {"code": ...})`` -> the /gateway/handle reply body."""

    async def post(device_id: str, event: str, data: dict[str, Any] | None = None, request_id: Any = "r1") -> dict:
        body = {"event": event, "request_id": request_id, "device_id": device_id, "data": data or {}}
        response = await client.post("/gateway/handle", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    return post
