"""Who is connected: devices -> connections, each connection with its own outbound queue.

A connection's frames go through one `asyncio.Queue` drained by one sender task, so replies and
pushes never interleave mid-frame and a push never waits for a socket. A client whose queue is full
is too slow to keep up: it is closed (code 4008, "reconnect") rather than stalling a broadcast.

A frame pushed to an idle connection (nothing queued, nothing being sent) is written in the pusher's
own turn of the event loop: the socket's send almost never has to wait, and skipping the queue and
the sender's wake-up is what keeps a broadcast to 1000 sockets near a plain loop of sends. A send
that does have to wait is handed, unfinished, to the sender task, ahead of anything queued after it.

The manager can hold several connections per device id (a push reaches each), but the identity rules
(`identity.py`) admit one live socket per device: a newcomer replaces or is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, Final

from sonalyze_gateway.liveness import Prober

logger = logging.getLogger("sonalyze.gateway.connections")

SendText = Callable[[str], Coroutine[Any, Any, None]]
CloseSocket = Callable[[int, str], Coroutine[Any, Any, None]]

CLOSE_GOING_AWAY: Final = 1001
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_TIMEOUT_S: Final = 2.0
# connections handed a broadcast frame before the broadcast yields to the event loop, so other
# sockets are served between slices of a large fan-out
FANOUT_SLICE_CONNECTIONS: Final = 64


class _UnfinishedSend:
    """A send started by hand (``coroutine.send(None)``) that had to wait for ``waiting_on``: awaiting
    this continues it exactly where it stopped, as the task awaiting it would have (Python 3.12's eager
    tasks do the same)."""

    __slots__ = ("_sending", "_waiting_on")

    def __init__(self, sending: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._sending = sending
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        sending, waiting_on = self._sending, self._waiting_on
        while True:
            try:
                result = yield waiting_on
            except GeneratorExit:
                sending.close()
                raise
            except BaseException as exc:  # cancelled while waiting: the send sees it, as it would in a task
                try:
                    waiting_on = sending.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = sending.send(result)
                except StopIteration:
                    return


class Connection:
    """One WebSocket: its device (once identified) and the queue of frames waiting to be sent."""

    __slots__ = (
        "_busy",
        "_close",
        "_closer",
        "_prober",
        "_queue",
        "_send",
        "_sender",
        "closed",
        "connection_id",
        "device_id"
    )  # fmt: skip

    def __init__(
        self, connection_id: int, send: SendText, close: CloseSocket, queue_frames: int, prober: Prober | None = None
    ) -> None:
        self.connection_id = connection_id
        self.device_id: str | None = None
        self.closed = False
        self._send = send
        self._close = close
        self._queue: asyncio.Queue[str | _UnfinishedSend] = asyncio.Queue(queue_frames)
        self._busy = False  # the sender task holds a frame it has not finished sending
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._prober = prober

    async def probe(self, timeout_s: float) -> bool | None:
        """Does the peer answer a ping within ``timeout_s``? None when this socket cannot be pinged."""
        if self.closed:
            return False
        if self._prober is None:
            return None
        return await self._prober(timeout_s)

    def start(self) -> None:
        self._sender = asyncio.get_running_loop().create_task(self._drain())

    @property
    def queued_frames(self) -> int:
        return self._queue.qsize()

    def push(self, frame: str) -> bool:
        """Queue a serialised frame; False when the connection is closed or was just dropped as too slow."""
        if self.closed:
            return False
        if not self._busy and self._queue.empty():
            self._send_now(frame)
            return not self.closed
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning(
                "connection %d of %s dropped: %d frames waiting",
                self.connection_id,
                self.device_id,
                self._queue.qsize(),
            )
            self.abort(CLOSE_SLOW_CONSUMER, "too slow to receive")
            return False
        return True

    def _send_now(self, frame: str) -> None:
        """Write ``frame`` in this turn of the loop; a send that must wait goes to the sender task."""
        sending = self._send(frame)
        try:
            waiting_on = sending.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the socket went away under us; the receive loop sees the disconnect
            logger.debug("connection %d: send failed: %r", self.connection_id, exc)
            self.closed = True
            self._stop_sender()
            return
        self._queue.put_nowait(_UnfinishedSend(sending, waiting_on))  # the queue was empty

    async def _drain(self) -> None:
        get = self._queue.get
        send = self._send
        try:
            while True:
                item = await get()
                self._busy = True
                await (send(item) if isinstance(item, str) else item)
                self._busy = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us; the receive loop sees the disconnect
            logger.debug("connection %d: send failed: %r", self.connection_id, exc)
            self.closed = True

    def abort(self, code: int, reason: str) -> None:
        """Stop sending and close in the background (used where awaiting is not possible)."""
        if self.closed:
            return
        self.closed = True
        self._stop_sender()
        self._closer = asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    async def close(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with ``code``."""
        if self.closed:
            if self._closer is not None:
                await asyncio.wait({self._closer}, timeout=CLOSE_TIMEOUT_S)
            return
        self.closed = True
        self._stop_sender()
        await self._close_quietly(code, reason)

    async def say_and_close(self, frame: str, code: int, reason: str) -> None:
        """Send what is queued, then ``frame``, then close with ``code``: a refusal the client must read."""
        if self.closed:
            return
        self.closed = True
        self._stop_sender()
        try:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                await asyncio.wait_for(self._send(item) if isinstance(item, str) else _finish(item), CLOSE_TIMEOUT_S)
            await asyncio.wait_for(self._send(frame), CLOSE_TIMEOUT_S)
        except Exception as exc:  # gone already: the close below is all that is left to try
            logger.debug("connection %d: last frame not sent: %r", self.connection_id, exc)
        await self._close_quietly(code, reason)

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self._close(code, reason), CLOSE_TIMEOUT_S)
        except Exception as exc:  # already gone, or the peer does not read: nothing more to do
            logger.debug("connection %d: close(%d) failed: %r", self.connection_id, code, exc)

    def _stop_sender(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()

    async def finish(self) -> None:
        """After the socket ended: stop the sender and wait for it."""
        self.closed = True
        self._stop_sender()
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender


async def _finish(unfinished: _UnfinishedSend) -> None:
    await unfinished


class ConnectionManager:
    """All open connections, and the identified ones grouped by device id."""

    def __init__(self) -> None:
        self._connections: set[Connection] = set()
        self._by_device: dict[str, dict[Connection, None]] = {}
        self.n_closed = 0  # sockets removed since start

    @property
    def n_connections(self) -> int:
        return len(self._connections)

    @property
    def n_devices(self) -> int:
        return len(self._by_device)

    def add(self, connection: Connection) -> None:
        self._connections.add(connection)

    def identify(self, connection: Connection, device_id: str) -> bool:
        """Bind ``connection`` to ``device_id``; True when it is the device's first open connection."""
        if connection.device_id is not None:
            raise ValueError(f"connection {connection.connection_id} is already {connection.device_id}")
        connection.device_id = device_id
        peers = self._by_device.get(device_id)
        if peers is None:
            self._by_device[device_id] = {connection: None}
            return True
        peers[connection] = None
        return False

    def remove(self, connection: Connection) -> str | None:
        """Forget ``connection``; returns its device id when that was the device's last connection."""
        if connection in self._connections:
            self._connections.remove(connection)
            self.n_closed += 1
        device_id = connection.device_id
        if device_id is None:
            return None
        peers = self._by_device.get(device_id)
        if peers is None or connection not in peers:
            return None
        del peers[connection]
        if peers:
            return None
        del self._by_device[device_id]
        return device_id

    def connections_of(self, device_id: str) -> tuple[Connection, ...]:
        return tuple(self._by_device.get(device_id, ()))

    def is_online(self, device_id: str) -> bool:
        return device_id in self._by_device

    async def broadcast(self, device_ids: Iterable[str], frame: str) -> tuple[list[str], list[str]]:
        """Queue one serialised ``frame`` on every connection of ``device_ids``: ``(delivered, offline)``.

        A device counts as delivered when at least one of its connections took the frame.
        """
        delivered: list[str] = []
        offline: list[str] = []
        handed = 0
        for device_id in dict.fromkeys(device_ids):
            peers = self._by_device.get(device_id)
            if not peers:
                offline.append(device_id)
                continue
            taken = False
            for connection in tuple(peers):
                taken = connection.push(frame) or taken
            (delivered if taken else offline).append(device_id)
            handed += len(peers)
            if handed >= FANOUT_SLICE_CONNECTIONS:
                handed = 0
                await asyncio.sleep(0)
        return delivered, offline

    async def close_all(self, code: int, reason: str) -> int:
        """Close every open connection with ``code`` (shutdown); returns how many were open."""
        connections = list(self._connections)
        if connections:
            await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)
        return len(connections)
