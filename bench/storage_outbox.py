"""Figures for recording through the outbox into a real storage process.

Prints the time a service waits per recorder call (the local durable put), the delivery rate into
storage while it is up, and how long a backlog built while storage was down takes to drain.

    .venv/bin/python bench/storage_outbox.py                    # storage on SQLite
    STORAGE_DATABASE_URL=postgresql+asyncpg://... .venv/bin/python bench/storage_outbox.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from sonalyze_protocol.outbox import Backoff
from sonalyze_protocol.storage_client import StorageRecorder
from sonalyze_suite.launcher import Suite, SuiteConfig

N_RECORDS = 300


async def put_measurements(recorder: StorageRecorder, run: str, n: int) -> list[float]:
    """Record ``n`` measurements; returns each call's duration in ms."""
    durations_ms = []
    for index in range(n):
        started = time.perf_counter()
        await recorder.measurement(f"job-{run}", f"up-{index}.wav", sample_rate_hz=48000, duration_s=10.0,
                                   size_bytes=960_000, meta={"bench": True})  # fmt: skip
        durations_ms.append((time.perf_counter() - started) * 1000)
    return durations_ms


def describe(label: str, durations_ms: list[float]) -> None:
    ordered = sorted(durations_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{label:<44} median {statistics.median(ordered):6.2f} ms   p99 {p99:6.2f} ms")


async def main() -> None:
    logging.getLogger("sonalyze.outbox").setLevel(logging.ERROR)  # the retries while storage is down
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        config = SuiteConfig.on_free_ports(
            data_dir=state_dir / "data",
            state_dir=state_dir,
            services=("storage",),
            storage_database_url=os.environ.get("STORAGE_DATABASE_URL") or None,
            log_level="WARNING",
        )
        suite = Suite(config, log_dir=state_dir / "logs")
        await asyncio.to_thread(suite.start)
        recorder = await StorageRecorder.open("bench", storage_url=config.url("storage"), outbox_dir=state_dir,
                                              backoff=Backoff(initial_s=0.05, max_s=0.5))  # fmt: skip
        try:
            started = time.perf_counter()
            durations_ms = await put_measurements(recorder, "up", N_RECORDS)
            await recorder.outbox.flush(120)
            up_s = time.perf_counter() - started
            describe(f"recorder call, storage up ({N_RECORDS} calls)", durations_ms)
            print(f"{'put and delivered, storage up':<44} {N_RECORDS / up_s:6.0f} records/s")

            await asyncio.to_thread(suite.stop_service, "storage")
            durations_ms = await put_measurements(recorder, "down", N_RECORDS)
            describe("recorder call, storage down", durations_ms)
            await asyncio.to_thread(suite.start_service, "storage")
            await asyncio.to_thread(suite.wait_healthy, ["storage"])
            started = time.perf_counter()
            await recorder.outbox.flush(120)
            drain_s = time.perf_counter() - started
            print(f"{'backlog drained after restart':<44} {N_RECORDS / drain_s:6.0f} records/s ({drain_s:.2f} s)")
        finally:
            await recorder.aclose()
            await asyncio.to_thread(suite.stop)


if __name__ == "__main__":
    asyncio.run(main())
