"""The outbox on its own: durability, order, backoff, dead entries, clean close and resume after a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sonalyze_protocol.logs import bind_context
from sonalyze_protocol.outbox import Backoff, Delivery, DeliveryOutcome, Outbox, OutboxEntry

OK = Delivery(DeliveryOutcome.DELIVERED)


class Target:
    """A deliverer that answers from a script of outcomes (then DELIVERED) and records what it got."""

    def __init__(self, *script: DeliveryOutcome) -> None:
        self.script = list(script)
        self.calls: list[OutboxEntry] = []
        self.delivered: list[dict[str, object]] = []

    async def __call__(self, entry: OutboxEntry) -> Delivery:
        self.calls.append(entry)
        outcome = self.script.pop(0) if self.script else DeliveryOutcome.DELIVERED
        if outcome is DeliveryOutcome.DELIVERED:
            self.delivered.append(entry.payload)
        return Delivery(outcome, f"scripted {outcome.value}")


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)
        await asyncio.sleep(0)


NO_JITTER = Backoff(initial_s=0.5, max_s=4.0, multiplier=2.0, jitter=0.0)


@pytest.fixture
async def open_outbox(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Outbox]]]:
    opened: list[Outbox] = []

    async def factory(deliver: Callable[[OutboxEntry], Awaitable[Delivery]], **kwargs: object) -> Outbox:
        outbox = await Outbox.open(tmp_path / "test.outbox.sqlite3", deliver, **kwargs)  # type: ignore[arg-type]
        opened.append(outbox)
        return outbox

    yield factory
    for outbox in opened:
        await outbox.aclose(drain_timeout_s=0)


class TestBackoff:
    def test_delays_double_from_the_initial_delay_up_to_the_cap(self) -> None:
        assert [NO_JITTER.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]

    def test_a_huge_attempt_count_stays_at_the_cap(self) -> None:
        assert NO_JITTER.delay_s(10_000) == 4.0

    def test_jitter_stays_within_its_fraction_and_under_the_cap(self) -> None:
        import random

        backoff = Backoff(initial_s=1.0, max_s=8.0, jitter=0.25)
        rng = random.Random(7)
        first = [backoff.delay_s(1, rng) for _ in range(200)]
        assert 0.75 <= min(first) < 0.85 and 1.15 < max(first) <= 1.25
        assert max(backoff.delay_s(10, rng) for _ in range(200)) <= 8.0

    @pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"max_s": 0.1}, {"multiplier": 0.5}, {"jitter": 1.0}])
    def test_nonsense_parameters_are_refused(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            Backoff(**kwargs)


class TestDelivery:
    async def test_entries_are_delivered_once_each_in_put_order(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target()
        outbox = await open_outbox(target)
        for n in range(20):
            await outbox.put("thing", f"k{n}", {"n": n})
        assert await outbox.flush(5.0)
        assert target.delivered == [{"n": n} for n in range(20)]
        assert await outbox.counts() == (0, 0)

    async def test_a_put_is_on_disk_when_it_returns(
        self, tmp_path: Path, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        outbox = await open_outbox(Target(*[DeliveryOutcome.RETRY] * 100), sleep=Sleeps())
        seq = await outbox.put("thing", "k", {"x": 1})
        # another connection, as a restarted process would open it
        with sqlite3.connect(tmp_path / "test.outbox.sqlite3") as db:
            rows = db.execute("SELECT seq, kind, key, payload FROM outbox").fetchall()
        assert (seq, "thing", "k", '{"x":1}') in rows

    async def test_the_request_and_device_ids_travel_with_the_entry(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target()
        outbox = await open_outbox(target)
        with bind_context(request_id="req-7", device_id="phone-1"):
            await outbox.put("thing", "k", {})
        assert await outbox.flush(5.0)
        assert (target.calls[0].request_id, target.calls[0].device_id) == ("req-7", "phone-1")

    async def test_a_payload_that_is_not_json_is_refused_at_put(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        outbox = await open_outbox(Target())
        with pytest.raises(ValueError):
            await outbox.put("thing", "k", {"x": float("nan")})
        assert await outbox.counts() == (0, 0)


class TestRetries:
    async def test_a_failing_head_is_retried_with_growing_delays_and_blocks_what_follows(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target(*[DeliveryOutcome.RETRY] * 5)
        sleeps = Sleeps()
        outbox = await open_outbox(target, backoff=NO_JITTER, sleep=sleeps)
        await outbox.put("thing", "first", {"n": 1})
        await outbox.put("thing", "second", {"n": 2})
        assert await outbox.flush(5.0)
        assert sleeps.delays_s == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert [call.key for call in target.calls] == ["first"] * 6 + ["second"]
        assert target.delivered == [{"n": 1}, {"n": 2}]

    async def test_the_attempt_count_is_kept_on_the_entry(self, open_outbox: Callable[..., Awaitable[Outbox]]) -> None:
        target = Target(DeliveryOutcome.RETRY, DeliveryOutcome.RETRY)
        outbox = await open_outbox(target, backoff=NO_JITTER, sleep=Sleeps())
        await outbox.put("thing", "k", {})
        assert await outbox.flush(5.0)
        assert [call.attempts for call in target.calls] == [0, 1, 2]
        assert target.calls[2].last_error == "scripted retry"

    async def test_a_deliverer_that_raises_is_retried_not_fatal(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        calls = 0

        async def flaky(entry: OutboxEntry) -> Delivery:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return OK

        outbox = await open_outbox(flaky, sleep=Sleeps())
        await outbox.put("thing", "k", {})
        assert await outbox.flush(5.0)
        assert calls == 2

    async def test_without_an_injected_sleep_the_real_backoff_is_waited(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target(DeliveryOutcome.RETRY)
        outbox = await open_outbox(target, backoff=Backoff(initial_s=0.3, max_s=0.3, jitter=0.0))
        started = asyncio.get_running_loop().time()
        await outbox.put("thing", "k", {})
        assert await outbox.flush(5.0)
        assert asyncio.get_running_loop().time() - started >= 0.29


class TestDeadEntries:
    async def test_a_rejected_entry_is_set_aside_and_the_queue_goes_on(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target(DeliveryOutcome.REJECTED)
        outbox = await open_outbox(target, sleep=Sleeps())
        await outbox.put("thing", "bad", {"n": 1})
        await outbox.put("thing", "good", {"n": 2})
        assert await outbox.flush(5.0)
        assert target.delivered == [{"n": 2}]
        assert await outbox.counts() == (0, 1)
        dead = await outbox.dead_entries()
        assert [(e.key, e.last_error) for e in dead] == [("bad", "scripted rejected")]

    async def test_a_conflict_is_retried_a_bounded_number_of_times(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target(*[DeliveryOutcome.CONFLICT] * 10)
        sleeps = Sleeps()
        outbox = await open_outbox(target, sleep=sleeps, max_conflict_attempts=3)
        await outbox.put("thing", "orphan", {})
        assert await outbox.flush(5.0)
        assert len(target.calls) == 3 and len(sleeps.delays_s) == 2
        assert await outbox.counts() == (0, 1)

    async def test_requeued_dead_entries_are_delivered(self, open_outbox: Callable[..., Awaitable[Outbox]]) -> None:
        target = Target(DeliveryOutcome.REJECTED)
        outbox = await open_outbox(target, sleep=Sleeps())
        await outbox.put("thing", "k", {"n": 1})
        assert await outbox.flush(5.0)
        assert await outbox.requeue_dead() == 1
        await asyncio.sleep(0)
        assert await outbox.flush(5.0)
        assert target.delivered == [{"n": 1}]
        assert await outbox.counts() == (0, 0)


class TestCloseAndResume:
    async def test_entries_left_at_close_are_delivered_after_reopening_in_order(self, tmp_path: Path) -> None:
        path = tmp_path / "resume.outbox.sqlite3"
        away = Target(*[DeliveryOutcome.RETRY] * 1000)
        first = await Outbox.open(path, away, backoff=Backoff(initial_s=0.05, max_s=0.05))
        for n in range(5):
            await first.put("thing", f"k{n}", {"n": n})
        await first.aclose(drain_timeout_s=0.2)
        assert away.delivered == []

        back = Target()
        second = await Outbox.open(path, back)
        try:
            assert await second.flush(5.0)
        finally:
            await second.aclose()
        assert back.delivered == [{"n": n} for n in range(5)]

    async def test_close_drains_what_it_can_within_the_timeout(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        target = Target()
        outbox = await open_outbox(target)
        for n in range(10):
            await outbox.put("thing", f"k{n}", {"n": n})
        await outbox.aclose(drain_timeout_s=5.0)
        assert len(target.delivered) == 10

    async def test_close_does_not_wait_for_a_target_that_is_away(
        self, open_outbox: Callable[..., Awaitable[Outbox]]
    ) -> None:
        outbox = await open_outbox(Target(*[DeliveryOutcome.RETRY] * 1000), backoff=Backoff(initial_s=30, max_s=30))
        await outbox.put("thing", "k", {})
        started = asyncio.get_running_loop().time()
        await outbox.aclose(drain_timeout_s=10.0)  # the first failed attempt ends the drain
        assert asyncio.get_running_loop().time() - started < 1.0

    async def test_put_after_close_raises(self, open_outbox: Callable[..., Awaitable[Outbox]]) -> None:
        outbox = await open_outbox(Target())
        await outbox.aclose()
        with pytest.raises(RuntimeError):
            await outbox.put("thing", "k", {})

    async def test_entries_survive_a_process_that_dies_without_closing(self, tmp_path: Path) -> None:
        path = tmp_path / "crash.outbox.sqlite3"
        script = textwrap.dedent(f"""
            import asyncio, os
            from sonalyze_protocol.outbox import Backoff, Delivery, DeliveryOutcome, Outbox

            async def away(entry):
                return Delivery(DeliveryOutcome.RETRY, "down")

            async def main():
                outbox = await Outbox.open({str(path)!r}, away, backoff=Backoff(initial_s=60, max_s=60))
                for n in range(25):
                    await outbox.put("thing", f"k{{n}}", {{"n": n}})
                os._exit(0)  # no close, no flush: as if the process were killed

            asyncio.run(main())
        """)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        back = Target()
        outbox = await Outbox.open(path, back)
        try:
            assert await outbox.flush(5.0)
        finally:
            await outbox.aclose()
        assert back.delivered == [{"n": n} for n in range(25)]


class TestReplayCommand:
    async def test_the_replay_command_requeues_dead_letters_and_a_running_outbox_delivers_them(
        self, open_outbox: Callable[..., Awaitable[Outbox]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import sonalyze_protocol.outbox as outbox_module

        monkeypatch.setattr(outbox_module, "IDLE_POLL_S", 0.2)
        target = Target(DeliveryOutcome.REJECTED)  # refused once (the bug), accepted after the fix
        outbox = await open_outbox(target, sleep=Sleeps())
        await outbox.put("thing", "once-refused", {"n": 1})
        assert await outbox.flush(5.0)
        assert await outbox.counts() == (0, 1)

        listing = subprocess.run(
            [sys.executable, "-m", "sonalyze_protocol.outbox_replay", "--list", str(tmp_path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "test: thing once-refused" in listing.stdout and "test: 1 dead entries" in listing.stdout
        replay = subprocess.run(
            [sys.executable, "-m", "sonalyze_protocol.outbox_replay", str(tmp_path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "test: 1 dead entries queued again" in replay.stdout

        for _ in range(50):  # the running outbox notices within its idle poll, without a new put
            if target.delivered:
                break
            await asyncio.sleep(0.1)
        assert target.delivered == [{"n": 1}]
        assert await outbox.counts() == (0, 0)
