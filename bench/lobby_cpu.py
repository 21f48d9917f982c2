"""The lobby's CPU per ``/gateway/handle`` request, measured on the real process (no timing of the client).

The lobby alone is started by the launcher (SQLite, or PostgreSQL with ``--postgres-url``); 16 keep-alive
clients post events to it and the lobby process's own CPU time (/proc) is divided by the events served,
so a loaded machine slows the run but barely moves the figures:

- ``lobby.get`` of a well-formed code no lobby has (one database read; the gateway benchmark's routed event);
- an event no handler serves (the floor: HTTP, middlewares, routing, logging, no database);
- presence: 1000 single ``device.connected`` notices, then 2000 in ``device.presence`` batches of 500.

    .venv/bin/python bench/lobby_cpu.py                      # SQLite, LOG_LEVEL=INFO (~15 s)
    .venv/bin/python bench/lobby_cpu.py --log-level WARNING
    .venv/bin/python bench/lobby_cpu.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Final

import aiohttp
import orjson

from sonalyze_suite.launcher import Suite, SuiteConfig

TOKEN: Final = "bench-token"
CONCURRENCY: Final = 16
N_EVENTS: Final = 3000
N_SINGLE_NOTICES: Final = 1000
N_BATCHES: Final = 4
BATCH_SIZE: Final = 500
UNKNOWN_CODE: Final = "ZZZZ22"  # well-formed (codes.py alphabet), no lobby has it


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> None:
    headers = {"X-Internal-Token": TOKEN, "Content-Type": "application/json"}
    pending = iter(bodies)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def client() -> None:
            for body in pending:
                async with session.post(url, data=body) as response:
                    reply = await response.read()
                    if response.status != 200 or b'"internal_error"' in reply:
                        raise RuntimeError(f"the lobby answered {response.status}: {reply[:200]!r}")

        await asyncio.gather(*(client() for _ in range(concurrency)))


def event(name: str, request_id: int | None, device_id: str, data: dict[str, object]) -> bytes:
    return orjson.dumps({"event": name, "request_id": request_id, "device_id": device_id, "data": data})


async def measure(url: str, pid: int, label: str, bodies: list[bytes], per: int, concurrency: int) -> None:
    cpu_before_s, wall_before_s = process_cpu_s(pid), time.perf_counter()
    await post_all(url, bodies, concurrency)
    cpu_s, wall_s = process_cpu_s(pid) - cpu_before_s, time.perf_counter() - wall_before_s
    print(f"  {label:<44} {1000 * cpu_s / per:7.3f} ms CPU each   ({per / wall_s:6.0f}/s wall)", flush=True)


async def main_async(args: argparse.Namespace) -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="lobby-cpu-"))
    database_url = None
    if args.postgres_url:
        from sonalyze_suite.testing import create_database

        database_url = await create_database(args.postgres_url, "bench_lobby_cpu")
    config = SuiteConfig.on_free_ports(
        data_dir=work_dir / "data", state_dir=work_dir / "state", services=("lobby",),
        internal_auth_token=TOKEN, log_level=args.log_level, lobby_database_url=database_url,
    )  # fmt: skip
    suite = Suite(config, log_dir=work_dir / "logs")
    suite.start(timeout_s=120)
    try:
        pid = suite.children["lobby"].process.pid
        url = config.url("lobby") + "/gateway/handle"
        load = os.getloadavg()[0]
        print(f"lobby_cpu: {'PostgreSQL' if database_url else 'SQLite'}, LOG_LEVEL={args.log_level}, "
              f"{CONCURRENCY} clients; load average {load:.2f} on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
        gets = [event("lobby.get", i, f"d{i % 200}", {"code": UNKNOWN_CODE}) for i in range(N_EVENTS)]
        await post_all(url, gets[:300], CONCURRENCY)  # warm up: pools, statement caches
        await measure(url, pid, "lobby.get of an unknown code", gets, N_EVENTS, CONCURRENCY)
        floor = [event("bench.nothing", i, f"d{i % 200}", {}) for i in range(N_EVENTS)]
        await measure(url, pid, "an event no handler serves (the floor)", floor, N_EVENTS, CONCURRENCY)
        singles = [event("device.connected", None, f"single-{i}", {}) for i in range(N_SINGLE_NOTICES)]
        await measure(url, pid, "presence: one device.connected per request", singles, N_SINGLE_NOTICES, CONCURRENCY)
        batches = [
            event("device.presence", None, "gateway",
                  {"changes": [{"device_id": f"batch-{b}-{i}", "connected": True} for i in range(BATCH_SIZE)]})
            for b in range(N_BATCHES)
        ]  # fmt: skip
        await measure(url, pid, f"presence: in batches of {BATCH_SIZE}, per notice", batches, N_BATCHES * BATCH_SIZE, 1)
    finally:
        suite.stop()
        if database_url and args.postgres_url:
            from sonalyze_suite.testing import drop_database

            await drop_database(args.postgres_url, database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="the lobby's LOG_LEVEL (make run: INFO)")
    parser.add_argument("--postgres-url", default=None, help="an admin URL: the lobby runs on a fresh database there")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
