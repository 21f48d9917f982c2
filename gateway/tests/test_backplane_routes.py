"""Two `Backplane` objects in one event loop on a real Redis (a fresh key prefix each test), each with its
own connection manager and scripted sockets: both ways of routing a broadcast, a gateway that is gone,
probes and closes. Skipped without Redis at ``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``),
except under CI."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sonalyze_gateway import backplane as backplane_module
from sonalyze_gateway.backplane import Backplane
from sonalyze_gateway.connection_manager import Connection, ConnectionManager
from sonalyze_suite.launcher import check_redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Socket:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed_with: list[int] = []

    async def send(self, frame: str) -> None:
        self.frames.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with.append(code)


class Side:
    def __init__(self, backplane: Backplane, manager: ConnectionManager) -> None:
        self.backplane = backplane
        self.manager = manager
        self.sockets: dict[str, Socket] = {}
        self.ids = 0

    async def attach(self, device_id: str) -> Socket:
        self.ids += 1
        sock = Socket()
        connection = Connection(self.ids, sock.send, sock.close, 64)
        connection.start()
        self.manager.add(connection)
        self.manager.identify(connection, device_id)
        await self.backplane.bound(device_id, connection)
        self.sockets[device_id] = sock
        return sock


@pytest.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    if problem := check_redis(REDIS_URL):
        if os.environ.get("CI"):
            raise AssertionError(problem)
        pytest.skip(problem)
    prefix = f"routes-{uuid.uuid4().hex[:8]}:"
    made = []
    for name in ("a", "b"):
        manager = ConnectionManager()
        backplane = Backplane(REDIS_URL, prefix, f"gw-{name}", manager, ack_timeout_s=1.0)
        await backplane.start()
        made.append(Side(backplane, manager))
    yield made[0], made[1]
    for side in made:
        await side.backplane.aclose()


async def settle() -> None:
    await asyncio.sleep(0.05)  # the scripted sockets' sender tasks


@pytest.mark.parametrize("path", ["one_round_trip", "two_round_trips"])
async def test_a_broadcast_reaches_both_gateways_and_names_the_offline(
    sides: tuple[Side, Side], path: str, monkeypatch: Any
) -> None:
    if path == "two_round_trips":
        monkeypatch.setattr(backplane_module, "ROUTE_SCRIPT_MAX_DEVICES", 0)
    a, b = sides
    await a.attach("dev-a")
    await b.attach("dev-b")
    await b.attach("dev-b2")
    delivered, offline = await a.backplane.broadcast(["dev-a", "dev-b", "ghost", "dev-b2"], '{"event":"x"}')
    await settle()
    assert sorted(delivered) == ["dev-a", "dev-b", "dev-b2"] and offline == ["ghost"]
    assert [s.frames for s in (a.sockets["dev-a"], b.sockets["dev-b"], b.sockets["dev-b2"])] == [['{"event":"x"}']] * 3
    assert a.backplane.n_remote_devices == 2 and b.backplane.n_served == 1


async def test_frames_with_any_text_arrive_unchanged(sides: tuple[Side, Side]) -> None:
    a, b = sides
    await b.attach("dev-b")
    frame = '{"event":"x","data":{"path":"/v1/a/b","text":"Größe \\u00e9 \\"quoted\\" 🎧"}}'
    delivered, _ = await a.backplane.broadcast(["dev-b"], frame)
    await settle()
    assert delivered == ["dev-b"] and b.sockets["dev-b"].frames == [frame]


async def test_a_gone_gateway_devices_are_offline_at_once_and_forgotten(sides: tuple[Side, Side]) -> None:
    a, b = sides
    await b.attach("dev-b")
    await b.backplane.aclose()
    started = asyncio.get_running_loop().time()
    delivered, offline = await a.backplane.broadcast(["dev-b"], "{}")
    took_s = asyncio.get_running_loop().time() - started
    await asyncio.sleep(0.1)
    assert (delivered, offline) == ([], ["dev-b"]) and took_s < 0.5
    # the stale entry was dropped, and marked: whoever admits it next tells the lobby it went and came back
    assert await a.backplane.whereabouts("dev-b") == (None, True)


async def test_probe_and_close_through_the_other_gateway(sides: tuple[Side, Side]) -> None:
    a, b = sides
    sock = await b.attach("dev-b")
    assert await a.backplane.remote_holder("dev-b") == "gw-b"
    # a scripted socket cannot be pinged: "cannot tell", which the identity rules count as alive
    assert await a.backplane.probe_remote("gw-b", "dev-b", 0.2) is None
    assert await a.backplane.probe_remote("gw-b", "nobody", 0.2) is False
    await a.backplane.close_remote("gw-b", "dev-b", 4503, "replaced")
    await asyncio.sleep(0.2)
    assert sock.closed_with == [4503]
