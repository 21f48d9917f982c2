"""End-to-end fixtures: the real services as processes on free ports, and scripted WebSocket phones."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from sonalyze_suite import Suite, SuiteConfig

# short waits, so a silent phone fails the step in seconds; the honest phones answer far quicker
PROTOCOL_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "8",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "20",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "6",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "45",
    "MEASUREMENT_DISCONNECT_GRACE_S": "5",
    "MEASUREMENT_ANALYSIS_TIMEOUT_S": "150",
}


class FrameError(Exception):
    """An ``error`` frame answered a request."""

    def __init__(self, event: str, error: dict[str, Any]) -> None:
        super().__init__(f"{event}: {error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.error = error


class Phone:
    """One scripted device on the gateway's ``/ws``: requests get their response, pushes queue up."""

    def __init__(self, device_id: str, ws_url: str) -> None:
        self.device_id = device_id
        self._url = f"{ws_url}?device_id={device_id}"
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def connect(self) -> Phone:
        self._socket = await websockets.connect(self._url, max_size=2**22)
        self._reader = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._socket = self._reader = None

    async def _read(self) -> None:
        async for raw in self._socket:
            frame = json.loads(raw)
            if frame.get("type") == "event":
                self.seen.append((frame["event"], frame["data"]))
                self.events.put_nowait((frame["event"], frame["data"]))
                continue
            future = self._pending.pop(str(frame.get("request_id")), None)
            if future is not None and not future.done():
                future.set_result(frame)

    async def request(self, event: str, data: dict[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
        self._next_id += 1
        request_id = f"{self.device_id}-{self._next_id}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._socket.send(json.dumps({"event": event, "request_id": request_id, "data": data or {}}))
        frame = await asyncio.wait_for(future, timeout_s)
        if frame["type"] == "error":
            raise FrameError(event, frame["error"])
        return frame["data"]

    async def refused(self, event: str, data: dict[str, Any] | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        """The error of a request that must fail (an AssertionError if it succeeds)."""
        try:
            answer = await self.request(event, data, timeout_s)
        except FrameError as exc:
            return exc.error
        raise AssertionError(f"{event} should have failed but answered {answer}")

    async def expect(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The next push named ``event`` (others before it are skipped; they stay in ``seen``)."""
        async with asyncio.timeout(timeout_s):
            while True:
                name, data = await self.events.get()
                if name == event:
                    return data


@pytest.fixture(scope="module")
async def suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """Measurement, lobby and gateway as real processes (lobby on PostgreSQL when TEST_DATABASE_URL is set)."""
    base: Path = tmp_path_factory.mktemp("e2e")
    lobby_url = await make_database_url("lobby_e2e") if os.environ.get("TEST_DATABASE_URL") else None
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=lobby_url,
        services=("measurement", "lobby", "gateway"),
        extra_env={"lobby": dict(PROTOCOL_ENV)},
    )
    running = Suite(config, log_dir=base / "logs")
    await asyncio.to_thread(running.start, 90.0)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


@pytest.fixture
async def phones(suite: Suite) -> AsyncIterator[Callable[[str], Awaitable[Phone]]]:
    """``await phone("dev-1")``: a connected phone, closed at the end of the test."""
    ws_url = suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    opened: list[Phone] = []

    async def phone(device_id: str) -> Phone:
        device = await Phone(device_id, ws_url).connect()
        opened.append(device)
        return device

    yield phone
    await asyncio.gather(*(p.close() for p in opened), return_exceptions=True)


# the virtual-device sessions: every wait short enough that a fault shows within seconds
DEVICE_SESSION_ENV = {
    **PROTOCOL_ENV,
    "MEASUREMENT_RECORDING_TIMEOUT_S": "8",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "25",
    "MEASUREMENT_DISCONNECT_GRACE_S": "8",
}


@pytest.fixture(scope="module")
async def full_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """All five services as real processes; lobby and storage on PostgreSQL when TEST_DATABASE_URL is set."""
    base: Path = tmp_path_factory.mktemp("e2e_full")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_full") if on_postgres else None,
        storage_database_url=await make_database_url("storage_full") if on_postgres else None,
        extra_env={"lobby": dict(DEVICE_SESSION_ENV)},
    )
    running = Suite(config, log_dir=base / "logs")
    await asyncio.to_thread(running.start, 120.0)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)
