"""`RequestBatcher`: one event per request while the service keeps up, what waits beyond as one batch."""

from __future__ import annotations

import asyncio

import pytest

from sonalyze_gateway.batching import RequestBatcher


class FakeService:
    """Answers ``one`` and ``batch`` requests when released; records what each request carried."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail_batches = False

    async def one(self, body: str) -> str:
        self.requests.append([body])
        await self.release.wait()
        return body.upper()

    async def batch(self, bodies: list[str]) -> list[str]:
        self.requests.append(list(bodies))
        await self.release.wait()
        if self.fail_batches:
            raise ConnectionError("lobby gone")
        return [b.upper() for b in bodies]


def batcher(
    service: FakeService, max_in_flight: int = 2, max_events: int = 10, max_bytes: int = 1000
) -> RequestBatcher:
    return RequestBatcher(service.one, service.batch, max_in_flight=max_in_flight, max_events=max_events,
                          max_bytes=max_bytes)  # fmt: skip


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_below_the_bound_each_event_is_its_own_request() -> None:
    service = FakeService()
    service.release.set()
    sender = batcher(service)
    assert await asyncio.gather(sender.submit("a"), sender.submit("b")) == ["A", "B"]
    assert service.requests == [["a"], ["b"]]
    assert sender.batches_sent == 0


async def test_what_waits_beyond_the_bound_goes_as_one_batch_in_order() -> None:
    service = FakeService()
    sender = batcher(service)
    calls = [asyncio.create_task(sender.submit(body)) for body in "abcdef"]
    await settle()
    assert service.requests == [["a"], ["b"]]  # the bound: two requests, the rest wait
    service.release.set()
    assert await asyncio.gather(*calls) == list("ABCDEF")
    assert service.requests[2:] == [["c", "d", "e", "f"]]
    assert (sender.batches_sent, sender.events_batched) == (1, 4)


async def test_a_batch_is_cut_by_events_and_bytes() -> None:
    service = FakeService()
    sender = batcher(service, max_in_flight=1, max_events=3, max_bytes=5)
    calls = [asyncio.create_task(sender.submit(body)) for body in ["a", "bb", "cc", "d", "e", "f", "gggggg"]]
    await settle()
    service.release.set()
    assert await asyncio.gather(*calls) == ["A", "BB", "CC", "D", "E", "F", "GGGGGG"]
    # 2 + 2 bytes, then a 1-byte event would still fit but 3 events is the most; an event over the bytes goes alone
    assert service.requests == [["a"], ["bb", "cc", "d"], ["e", "f"], ["gggggg"]]


async def test_a_failed_batch_fails_every_event_in_it_and_the_next_ones_still_go() -> None:
    service = FakeService()
    service.fail_batches = True
    sender = batcher(service, max_in_flight=1)
    calls = [asyncio.create_task(sender.submit(body)) for body in "abc"]
    await settle()
    service.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == "A"
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    service.fail_batches = False
    assert await sender.submit("d") == "D"


async def test_a_caller_that_leaves_while_waiting_is_not_sent() -> None:
    service = FakeService()
    sender = batcher(service, max_in_flight=1)
    first = asyncio.create_task(sender.submit("a"))
    waiting = [asyncio.create_task(sender.submit(body)) for body in "bcd"]
    await settle()
    waiting[1].cancel()  # "c"'s socket closed
    await settle()
    service.release.set()
    assert await first == "A"
    assert await waiting[0] == "B" and await waiting[2] == "D"
    assert service.requests == [["a"], ["b", "d"]]


async def test_close_cancels_the_waiting_callers() -> None:
    service = FakeService()
    sender = batcher(service, max_in_flight=1)
    first = asyncio.create_task(sender.submit("a"))
    second = asyncio.create_task(sender.submit("b"))
    await settle()
    sender.close()
    with pytest.raises(asyncio.CancelledError):
        await second
    first.cancel()


def test_the_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RequestBatcher(FakeService().one, FakeService().batch, max_in_flight=0, max_events=1, max_bytes=1)
