"""Load: many lobbies measuring at once through one gateway, with the virtual phones of `make demo`.

    .venv/bin/python bench/devices_load.py                 # 20 lobbies of 1 admin + 1 speaker + 3 microphones
    .venv/bin/python bench/devices_load.py --lobbies 5     # a quicker run

Starts the five services on free ports (SQLite), runs the sessions concurrently and prints how many
completed, the time per session, and the round-trip latency of every WebSocket event through the
gateway (p50/p95/p99, overall and per event).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, DemoResult, run_demo
from sonalyze_suite import Suite, SuiteConfig


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def one_session(gateway_url: str, seed: int, latencies_s: list[float]) -> tuple[DemoResult, float]:
    options = DemoOptions(
        gateway_url=gateway_url,
        n_speakers=1,
        n_microphones=3,
        seed=seed,
        session_timeout_s=600,
        latencies_s=latencies_s,
    )
    started = time.perf_counter()
    result = await run_demo(options, Progress(io.StringIO()))
    return result, time.perf_counter() - started


async def run(gateway_url: str, n_lobbies: int) -> int:
    latencies_s: list[float] = []
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one_session(gateway_url, 100 + i, latencies_s) for i in range(n_lobbies)))
    wall_s = time.perf_counter() - started
    completed = [duration for result, duration in outcomes if result.ok]
    print(f"lobbies: {n_lobbies} x (1 admin + 1 speaker + 3 microphones) measuring at once")
    print(f"sessions completed with every pair analysed: {len(completed)}/{n_lobbies} in {wall_s:.1f} s wall")
    if completed:
        print(f"time per session: median {statistics.median(completed):.1f} s, max {max(completed):.1f} s")
    if latencies_s:
        ms = [v * 1000 for v in latencies_s]
        print(
            f"gateway event round trip over {len(ms)} requests: p50 {percentile(ms, 50):.1f} ms, "
            f"p95 {percentile(ms, 95):.1f} ms, p99 {percentile(ms, 99):.1f} ms"
        )
    for result, _ in outcomes:
        if not result.ok:
            print(f"  failed session: {result.errors[:2]} {list(result.phone_errors.items())[:1]}", file=sys.stderr)
    return 0 if len(completed) == n_lobbies else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lobbies", type=int, default=20)
    parser.add_argument("--gateway", default=None, help="use a running suite at this http URL instead of starting one")
    args = parser.parse_args()
    if args.gateway:
        return asyncio.run(run(args.gateway, args.lobbies))
    with tempfile.TemporaryDirectory() as tmp:
        config = SuiteConfig.on_free_ports(
            data_dir=Path(tmp) / "data", state_dir=Path(tmp) / "state", log_level="WARNING"
        )
        suite = Suite(config, log_dir=Path(tmp) / "logs")
        suite.start(timeout_s=120)
        try:
            return asyncio.run(run(config.url("gateway"), args.lobbies))
        finally:
            suite.stop()


if __name__ == "__main__":
    sys.exit(main())
