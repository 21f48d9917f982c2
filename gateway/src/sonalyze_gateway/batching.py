"""Events to one service in batches when it is busy: one HTTP request for what waits, not one per event.

Each request costs both processes more than the event it carries: on the lobby's side the HTTP parse, the ASGI
cycle and two socket writes (~0.15 ms of the ~0.3 ms of a routed ``lobby.get``), on the gateway's the pool's
write, read and wake-ups. So `RequestBatcher` lets up to ``max_in_flight`` requests run at a time, each
carrying one event, as before: under light load nothing changes and nothing waits. An event that finds them
all busy waits, and when one returns, everything waiting goes as one ``/gateway/handle_batch`` (at most
``max_events`` and ``max_bytes``). The heavier the load, the larger the batches and the cheaper each event:
a service that falls behind catches up instead of queueing. The service runs a batch's events concurrently,
as it ran separate requests, and answers each as ``/gateway/handle`` would have.

Generic over what is sent (``B``, one event's body) and what comes back (``R``, one event's answer); a caller
that leaves while waiting (its socket closed) is dropped from the batch; a failed batch fails every event in it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sized
from typing import Final, Generic, TypeVar

BATCH_AFTER_IN_FLIGHT: Final = 4
"""Requests to the lobby at a time by default (``EVENT_BATCH_AFTER_IN_FLIGHT``): it serves one event at a time,
so more requests at once would only queue there."""

B = TypeVar("B", bound=Sized)
R = TypeVar("R")


class RequestBatcher(Generic[B, R]):
    """Sends events one per request while fewer than ``max_in_flight`` requests run, and what waits beyond
    them as batches (see the module's docstring)."""

    def __init__(
        self,
        send_one: Callable[[B], Awaitable[R]],
        send_batch: Callable[[list[B]], Awaitable[list[R]]],
        *,
        max_in_flight: int,
        max_events: int,
        max_bytes: int,
    ) -> None:
        if max_in_flight < 1 or max_events < 1:
            raise ValueError("max_in_flight and max_events must be at least 1")
        self._send_one = send_one
        self._send_batch = send_batch
        self._max_in_flight = max_in_flight
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._in_flight = 0
        self._waiting: deque[tuple[B, asyncio.Future[R]]] = deque()
        self._batches: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # for tests and benches: how often batching happened
        self.events_batched = 0

    async def submit(self, body: B) -> R:
        """The answer to ``body``; raises what sending it raised."""
        if self._in_flight < self._max_in_flight and not self._waiting:
            self._in_flight += 1
            try:
                return await self._send_one(body)
            finally:
                self._request_done()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((body, future))
        return await future

    def _request_done(self) -> None:
        self._in_flight -= 1
        if self._waiting and self._in_flight < self._max_in_flight:
            batch = self._next_batch()
            if batch:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._send(batch), name="event-batch")
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    def _next_batch(self) -> list[tuple[B, asyncio.Future[R]]]:
        batch: list[tuple[B, asyncio.Future[R]]] = []
        size = 0
        while self._waiting and len(batch) < self._max_events:
            body, future = self._waiting[0]
            if future.done():  # its caller left: nothing to send
                self._waiting.popleft()
                continue
            if batch and size + len(body) > self._max_bytes:
                break
            self._waiting.popleft()
            batch.append((body, future))
            size += len(body)
        return batch

    async def _send(self, batch: list[tuple[B, asyncio.Future[R]]]) -> None:
        try:
            if len(batch) == 1:
                results = [await self._send_one(batch[0][0])]
            else:
                self.batches_sent += 1
                self.events_batched += len(batch)
                results = await self._send_batch([body for body, _ in batch])
                if len(results) != len(batch):
                    raise ValueError(f"a batch of {len(batch)} events came back with {len(results)} answers")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled (shutdown): the callers are cancelled too
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=False):
                if not future.done():
                    future.set_result(result)
        finally:
            self._request_done()

    def close(self) -> None:
        """Cancel the batches on their way and every waiting caller (shutdown)."""
        for task in list(self._batches):
            task.cancel()
        while self._waiting:
            self._waiting.popleft()[1].cancel()
