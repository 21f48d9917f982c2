"""CPU per forwarded event of the HTTP clients the gateway could use, against the instant stub.

Compared: httpx (the spec's), aiohttp, and the gateway's own `sonalyze_gateway.http1_pool`.

    .venv/bin/python bench/gateway_clients.py [--requests 4000] [--concurrency 50]

Each client posts the gateway's ``/gateway/handle`` body (keep-alive, ``--concurrency`` in flight)
to bench/gateway_stub.py in another process; the figure is this process's CPU time per request
(``time.process_time``), which is what the gateway would spend, plus wall time. Rounds alternate
between clients; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import orjson

from sonalyze_suite.launcher import free_port

BODY = orjson.dumps({"event": "lobby.get", "request_id": "r1", "device_id": "d1", "data": {"lobby_id": "x"}})
HEADERS = {"Content-Type": "application/json", "X-Internal-Token": "t", "X-Device-Id": "d1", "X-Request-Id": "r1"}


async def drive(post: Callable[[], Awaitable[bytes]], n_requests: int, concurrency: int) -> tuple[float, float]:
    remaining = iter(range(n_requests))

    async def lane() -> None:
        for _ in remaining:
            await post()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return (time.process_time() - cpu0) / n_requests * 1e6, (time.perf_counter() - wall0) / n_requests * 1e6


async def with_aiohttp(url: str, n: int, concurrency: int) -> tuple[float, float]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def post() -> bytes:
            async with session.post(url, data=BODY, headers=HEADERS, timeout=timeout) as response:
                return await response.read()

        await drive(post, 200, concurrency)  # warm the pool
        return await drive(post, n, concurrency)


async def with_httpx(url: str, n: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post() -> bytes:
            response = await client.post(url, content=BODY, headers=HEADERS)
            return response.content

        await drive(post, 200, concurrency)
        return await drive(post, n, concurrency)


async def with_http1_pool(url: str, n: int, concurrency: int) -> tuple[float, float]:
    from sonalyze_gateway.http1_pool import Http1Pool

    base = url.removesuffix("/gateway/handle")
    pool = Http1Pool(base)
    head = pool.request_head("/gateway/handle", list(HEADERS.items()), len(BODY))
    request = head + BODY

    async def post() -> bytes:
        status, body = await pool.post(request, 30.0)
        return body

    try:
        await drive(post, 200, concurrency)
        return await drive(post, n, concurrency)
    finally:
        pool.close()


CLIENTS = {"http1_pool": with_http1_pool, "aiohttp": with_aiohttp, "httpx": with_httpx}


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    stub = subprocess.Popen([sys.executable, str(Path(__file__).with_name("gateway_stub.py")), str(port)])
    url = f"http://127.0.0.1:{port}/gateway/handle"
    try:
        await asyncio.sleep(1.0)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
        for rnd in range(args.rounds):
            for name in list(CLIENTS) if rnd % 2 == 0 else list(reversed(CLIENTS)):
                figures[name].append(await CLIENTS[name](url, args.requests, args.concurrency))
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {args.requests} requests x {args.rounds} rounds, "
              f"{args.concurrency} in flight, loop={type(asyncio.get_running_loop()).__module__}")  # fmt: skip
        print(f"{'client':<10} {'cpu us/request':>15} {'wall us/request':>16}")
        for name, runs in figures.items():
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"{name:<10} {cpu:>15.0f} {wall:>16.0f}")
    finally:
        stub.terminate()
        stub.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
