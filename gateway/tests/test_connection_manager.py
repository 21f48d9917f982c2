"""Devices -> connections, outbound queues, slow consumers, broadcast fan-out (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from sonalyze_gateway.connection_manager import CLOSE_SLOW_CONSUMER, Connection, ConnectionManager


class FakeSocket:
    """Records frames; ``stall`` makes sending hang like a peer that stopped reading."""

    def __init__(self, stall: bool = False, fail: bool = False) -> None:
        self.sent: list[str] = []
        self.closed_with: list[int] = []
        self.stall = stall
        self.fail = fail

    async def send(self, text: str) -> None:
        if self.fail:
            raise RuntimeError("socket gone")
        if self.stall:
            await asyncio.Event().wait()
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with.append(code)


_ids = iter(range(1, 1_000_000))


def make_connection(socket: FakeSocket, queue_frames: int = 8) -> Connection:
    connection = Connection(next(_ids), socket.send, socket.close, queue_frames)
    connection.start()
    return connection


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestDevices:
    async def test_first_and_last_connection_of_a_device_are_reported(self) -> None:
        manager = ConnectionManager()
        one, two = make_connection(FakeSocket()), make_connection(FakeSocket())
        manager.add(one)
        manager.add(two)
        assert manager.identify(one, "d") is True
        assert manager.identify(two, "d") is False
        assert (manager.n_connections, manager.n_devices) == (2, 1)
        assert manager.remove(one) is None
        assert manager.remove(two) == "d"
        assert (manager.n_connections, manager.n_devices, manager.n_closed) == (0, 0, 2)
        manager.remove(two)
        assert manager.n_closed == 2  # removing twice counts once
        await one.finish()
        await two.finish()

    async def test_unidentified_connection_leaves_no_device(self) -> None:
        manager = ConnectionManager()
        connection = make_connection(FakeSocket())
        manager.add(connection)
        assert manager.remove(connection) is None
        assert manager.n_connections == 0
        await connection.finish()

    async def test_identifying_twice_is_a_bug(self) -> None:
        manager = ConnectionManager()
        connection = make_connection(FakeSocket())
        manager.identify(connection, "d")
        with pytest.raises(ValueError):
            manager.identify(connection, "e")
        await connection.finish()


class TestBroadcast:
    async def test_frame_reaches_every_connection_of_each_device(self) -> None:
        manager = ConnectionManager()
        sockets = [FakeSocket() for _ in range(3)]
        for socket, device in zip(sockets, ["a", "a", "b"], strict=True):
            connection = make_connection(socket)
            manager.add(connection)
            manager.identify(connection, device)
        delivered, offline = await manager.broadcast(["a", "b", "c", "a"], "F")
        await settle()
        assert (delivered, offline) == (["a", "b"], ["c"])
        assert [s.sent for s in sockets] == [["F"], ["F"], ["F"]]

    async def test_large_fan_out_reaches_everyone_in_order(self) -> None:
        manager = ConnectionManager()
        sockets = [FakeSocket() for _ in range(300)]
        for i, socket in enumerate(sockets):
            connection = make_connection(socket)
            manager.identify(connection, f"d{i}")
        devices = [f"d{i}" for i in range(300)]
        await manager.broadcast(devices, "one")
        await manager.broadcast(devices, "two")
        await settle()
        assert all(s.sent == ["one", "two"] for s in sockets)


class TestSlowConsumers:
    async def test_a_full_queue_drops_that_connection_only(self) -> None:
        manager = ConnectionManager()
        slow_socket, fast_socket = FakeSocket(stall=True), FakeSocket()
        slow, fast = make_connection(slow_socket, queue_frames=2), make_connection(fast_socket, queue_frames=2)
        manager.identify(slow, "slow")
        manager.identify(fast, "fast")
        results = []
        for i in range(4):
            results.append(await manager.broadcast(["slow", "fast"], f"f{i}"))
            await settle()
        # the first frame is taken by the stalled send, two more fill the queue, the fourth overflows
        assert results[-1] == (["fast"], ["slow"])
        assert slow.closed and slow_socket.closed_with == [CLOSE_SLOW_CONSUMER]
        assert fast_socket.sent == ["f0", "f1", "f2", "f3"]
        assert slow.push("late") is False

    async def test_a_failing_send_marks_the_connection_closed(self) -> None:
        connection = make_connection(FakeSocket(fail=True))
        assert connection.push("x") is True
        await settle()
        assert connection.closed
        assert connection.push("y") is False


class TestCloseAll:
    async def test_every_connection_is_closed_with_the_code(self) -> None:
        manager = ConnectionManager()
        sockets = [FakeSocket(), FakeSocket(stall=True)]
        for socket in sockets:
            manager.add(make_connection(socket))
        assert await manager.close_all(1001, "bye") == 2
        assert [s.closed_with for s in sockets] == [[1001], [1001]]
