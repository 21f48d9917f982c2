"""`SeenDevices`: a connect storm becomes a few bulk writes, each device's window covering every notice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sonalyze_gateway.seen_devices import BATCH_DEVICES, SeenDevices

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeRecorder:
    def __init__(self) -> None:
        self.batches: list[dict[str, tuple[datetime, datetime]]] = []

    async def devices_seen(self, windows: dict[str, tuple[datetime, datetime]]) -> bool:
        self.batches.append(dict(windows))
        return True


def seen_devices(recorder: FakeRecorder, interval_s: float = 3600.0) -> SeenDevices:
    return SeenDevices(recorder, interval_s)  # type: ignore[arg-type]


class TestSeenDevices:
    async def test_notices_of_one_device_widen_one_window(self) -> None:
        recorder = FakeRecorder()
        seen = seen_devices(recorder)
        for minutes in (5, 1, 9, 3):
            seen.seen("p1", T0 + timedelta(minutes=minutes))
        seen.seen("p2", T0)
        await seen.flush()
        assert recorder.batches == [{"p1": (T0 + timedelta(minutes=1), T0 + timedelta(minutes=9)), "p2": (T0, T0)}]
        await seen.flush()
        assert len(recorder.batches) == 1  # nothing new, nothing written

    async def test_a_storm_goes_out_in_bounded_batches(self) -> None:
        recorder = FakeRecorder()
        seen = seen_devices(recorder)
        n = 2 * BATCH_DEVICES + 1
        for i in range(n):
            seen.seen(f"p{i}", T0)
        await seen.flush()
        assert [len(b) for b in recorder.batches] == [BATCH_DEVICES, BATCH_DEVICES, 1]
        assert set().union(*recorder.batches) == {f"p{i}" for i in range(n)}

    async def test_the_background_task_flushes_and_close_flushes_the_rest(self) -> None:
        recorder = FakeRecorder()
        seen = seen_devices(recorder, interval_s=0.05)
        seen.start()
        seen.seen("early")
        for _ in range(100):
            if recorder.batches:
                break
            await asyncio.sleep(0.02)
        seen.seen("late")
        await seen.aclose()
        keys: list[Any] = [k for b in recorder.batches for k in b]
        assert keys == ["early", "late"]
        assert seen.pending == 0
