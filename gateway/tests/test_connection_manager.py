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
        assert connection.push("x") is False  # written at once, so the failure is known at once
        assert connection.closed
        assert connection.push("y") is False
        await connection.finish()

    async def test_a_send_failing_from_the_queue_marks_the_connection_closed(self) -> None:
        socket = GatedSocket()
        connection = make_connection(socket)
        socket.gate.clear()
        connection.push("a")  # waits at the gate
        connection.push("b")  # queued behind it
        socket.fail_next = True
        socket.gate.set()
        await settle()
        assert connection.closed and socket.sent == ["a"]
        assert connection.push("c") is False


class GatedSocket(FakeSocket):
    """A socket whose sends wait while ``gate`` is clear, like a peer whose buffer is full."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.cancelled = 0
        self.fail_next = False

    async def send(self, text: str) -> None:
        if self.fail_next and self.sent:
            raise RuntimeError("socket gone")
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.sent.append(text)


class TestSendingAtOnce:
    async def test_an_idle_connection_writes_in_the_pushers_turn(self) -> None:
        socket = FakeSocket()
        connection = make_connection(socket)
        assert connection.push("now") is True
        assert socket.sent == ["now"]  # no turn of the loop in between
        assert connection.queued_frames == 0
        await connection.finish()

    async def test_a_send_that_waits_keeps_its_place_ahead_of_later_frames(self) -> None:
        socket = GatedSocket()
        connection = make_connection(socket)
        socket.gate.clear()
        assert connection.push("first") is True  # starts, then waits at the gate
        assert connection.push("second") is True
        assert connection.push("third") is True
        await settle()
        assert socket.sent == []
        socket.gate.set()
        await settle()
        assert socket.sent == ["first", "second", "third"]
        assert connection.push("fourth") is True and socket.sent[-1] == "fourth"  # idle again: at once
        await connection.finish()

    async def test_closing_cancels_a_send_that_waits(self) -> None:
        socket = GatedSocket()
        connection = make_connection(socket)
        socket.gate.clear()
        connection.push("stuck")
        await settle()
        await connection.finish()
        assert socket.cancelled == 1 and socket.sent == []

    async def test_say_and_close_finishes_a_waiting_send_first(self) -> None:
        socket = GatedSocket()
        connection = make_connection(socket)
        socket.gate.clear()
        connection.push("pending")
        asyncio.get_running_loop().call_later(0.01, socket.gate.set)
        await connection.say_and_close("last words", 4001, "bye")
        assert socket.sent[-1] == "last words" and socket.closed_with == [4001]


class TestCloseAll:
    async def test_every_connection_is_closed_with_the_code(self) -> None:
        manager = ConnectionManager()
        sockets = [FakeSocket(), FakeSocket(stall=True)]
        for socket in sockets:
            manager.add(make_connection(socket))
        assert await manager.close_all(1001, "bye") == 2
        assert [s.closed_with for s in sockets] == [[1001], [1001]]
