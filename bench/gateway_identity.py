"""What device identity costs: credentials, the registry, and claims against the real gateway.

    .venv/bin/python bench/gateway_identity.py [--connects 200] [--reclaims 3]

Prints the CPU cost of issuing and checking one credential and of a first issue's registry write,
then, against a gateway process (claim mode, no backends needed): connect -> ``gateway.identified``
latency for new device ids, how fast a second socket for a live id is refused (``device_in_use``),
and how long a phone whose old socket went silent waits to get its id back (the liveness ping).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

from sonalyze_gateway.device_registry import DeviceRegistry
from sonalyze_gateway.device_tokens import DeviceTokens, generate_key, key_fingerprint
from sonalyze_suite.launcher import Suite, SuiteConfig


def per_call_us(function: object, number: int) -> float:
    return timeit.timeit(function, number=number) / number * 1e6  # type: ignore[arg-type]


def credential_figures(work_dir: Path) -> None:
    key = generate_key()
    tokens = DeviceTokens(key)
    token = tokens.issue("phone-1", 1)
    registry = DeviceRegistry(work_dir / "bench-devices.sqlite3", key_fingerprint(key))
    ids = iter(range(10**9))
    print(f"credential issue                {per_call_us(lambda: tokens.issue('phone-1', 1), 3000):8.1f} us")
    print(f"credential check                {per_call_us(lambda: tokens.verify(token), 3000):8.1f} us")
    print(f"registry first issue (write)    {per_call_us(lambda: registry.issue(f'd-{next(ids)}'), 1000):8.1f} us")
    print(f"registry known id               {per_call_us(lambda: registry.issue('d-1'), 3000):8.2f} us")
    registry.close()


async def until_identified(ws: ClientConnection) -> dict[str, object]:
    while True:
        frame = orjson.loads(await ws.recv())
        if frame.get("event") == "gateway.identified" or frame.get("type") == "error":
            return frame


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def socket_figures(ws_url: str, n_connects: int, n_reclaims: int) -> None:
    connect_ms: list[float] = []
    for _ in range(n_connects):
        started = time.perf_counter()
        async with connect(f"{ws_url}?device_id=b-{uuid.uuid4().hex[:12]}", compression=None) as ws:
            await until_identified(ws)
            connect_ms.append((time.perf_counter() - started) * 1000)
    print(f"connect -> identified (new id)  p50 {statistics.median(connect_ms):6.2f} ms   "
          f"p99 {percentile(connect_ms, 99):6.2f} ms   (n={n_connects})")  # fmt: skip

    refused_ms: list[float] = []
    device = f"live-{uuid.uuid4().hex[:8]}"
    async with connect(f"{ws_url}?device_id={device}", compression=None) as holder:
        await until_identified(holder)
        for _ in range(max(10, n_connects // 10)):
            started = time.perf_counter()
            async with connect(f"{ws_url}?device_id={device}", compression=None) as intruder:
                frame = await until_identified(intruder)
                refused_ms.append((time.perf_counter() - started) * 1000)
                assert frame["type"] == "error", frame
    print(f"second socket refused           p50 {statistics.median(refused_ms):6.2f} ms   "
          f"max {max(refused_ms):6.2f} ms   (device_in_use)")  # fmt: skip

    reclaim_s: list[float] = []
    for _ in range(n_reclaims):
        device = f"lost-{uuid.uuid4().hex[:8]}"
        lost = await connect(f"{ws_url}?device_id={device}", compression=None)
        await until_identified(lost)
        lost.transport.pause_reading()  # its network is gone: no pong comes back
        started = time.perf_counter()
        async with connect(f"{ws_url}?device_id={device}", compression=None) as back:
            frame = await until_identified(back)
            reclaim_s.append(time.perf_counter() - started)
            assert frame["type"] == "event", frame
        lost.transport.abort()
    print(f"id back after the old socket went silent: median {statistics.median(reclaim_s):.2f} s "
          f"(DEVICE_LIVENESS_TIMEOUT_S=2.0; n={n_reclaims})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--reclaims", type=int, default=3)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    print(f"gateway_identity {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    credential_figures(work_dir)
    config = SuiteConfig.on_free_ports(
        data_dir=work_dir / "data", state_dir=work_dir / "state", services=("gateway",), log_level="WARNING"
    )
    suite = Suite(config, log_dir=work_dir / "logs")
    suite.start(timeout_s=60)
    try:
        asyncio.run(socket_figures(config.url("gateway").replace("http://", "ws://") + "/ws", args.connects,
                                   args.reclaims))  # fmt: skip
    finally:
        suite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
