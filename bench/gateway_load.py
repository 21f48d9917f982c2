"""Gateway load benchmark: the gateway against a bare FastAPI echo, interleaved, medians printed.

    .venv/bin/python bench/gateway_load.py            # 3 rounds, 10 s per load figure (~4 min)
    .venv/bin/python bench/gateway_load.py --quick    # 1 round, 3 s per load figure (~40 s)

Starts a stub backend that answers at once (bench/gateway_stub.py), the gateway as ``make run``
starts it (sonalyze_suite) with every service URL on that stub, and the bare echo of
bench/gateway_bare.py with the same uvicorn flags. Paced WebSocket clients run in ``--workers``
processes (bench/gateway_loadgen.py). Each round measures, for the bare echo and then the gateway
(the order alternates between rounds):

- connect + identify of N=1000 devices, all at once (time until the last one is identified);
- a local event (``identify``) at N=1000 x 5/s: latency p50/p95/p99, messages/s, errors;
- a routed event (``lobby.bench`` -> stub) at N=1000 x 2/s and at N=200 x 5/s (the bare echo just echoes);
- one broadcast to all N=1000, several times: time until the last device has it, per-device p50,
  and the longest wait of probe requests (two sockets, 250/s each) sent while it fans out.

Figures are medians over rounds; ratios are gateway / bare. The gateway runs with
RATE_LIMIT_RPS=500 so the probes are not throttled (load clients stay at 5/s, under any limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from sonalyze_suite.launcher import Suite, SuiteConfig, free_port
from websockets.asyncio.client import connect

BENCH_DIR: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from gateway_loadgen import identify_message, worker_main  # noqa: E402

# the flags the gateway runs with (make run and the Dockerfile); the bare echo gets the same
UVICORN_ENV: Final = {"UVICORN_WS_PER_MESSAGE_DEFLATE": "false"}
TOKEN: Final = "bench-token"
PROBE_SOCKETS: Final = 2
PROBE_INTERVAL_S: Final = 0.004
BROADCAST_GAP_S: Final = 0.6

TARGETS_MS: Final = {
    "local_1000x5_p99_ms": 15.0,
    "routed_200x5_p99_ms": 12.0,
    "routed_1000x2_p99_ms": 25.0,
    "connect_1000_s": 2.0,
    # "one broadcast to 1000 devices p50 <= 32 ms": the median device's delivery; the last device is shown too
    "broadcast_1000_per_device_p50_ms": 32.0,
    "broadcast_1000_all_ms": 32.0,
    "broadcast_1000_probe_max_ms": 15.0,
}


@dataclass
class Target:
    name: str
    ws_url: str
    broadcast_url: str
    broadcast_headers: dict[str, str]

    def broadcast_body(self, event: str, device_ids: list[str]) -> bytes:
        if self.name == "bare":
            return orjson.dumps({"event": event, "data": {"n": 1}})
        return orjson.dumps({"device_ids": device_ids, "event": event, "data": {"n": 1}})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Workers:
    def __init__(self, n: int) -> None:
        context = mp.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    async def call(self, op: str, per_worker_args: list[dict[str, Any]] | None = None) -> list[Any]:
        loop = asyncio.get_running_loop()
        for i, pipe in enumerate(self.pipes):
            pipe.send({"op": op, "args": per_worker_args[i] if per_worker_args else {}})
        return list(await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in self.pipes)))

    def split(self, items: list[str]) -> list[list[str]]:
        n = len(self.pipes)
        return [items[i::n] for i in range(n)]

    async def stop(self) -> None:
        await self.call("quit")
        for p in self.processes:
            p.join(5)


async def connect_devices(workers: Workers, target: Target, device_ids: list[str]) -> float:
    start_at_s = time.time() + 0.3
    parts = workers.split(device_ids)
    results = await workers.call(
        "connect", [{"url": target.ws_url, "device_ids": part, "start_at_s": start_at_s} for part in parts]
    )
    failed = sum(r["failed"] for r in results)
    if failed:
        print(f"    {target.name}: {failed} of {len(device_ids)} devices failed to connect", flush=True)
    return max(r["finished_s"] for r in results) - min(r["started_s"] for r in results)


async def run_load(workers: Workers, kind: str, rate_hz: float, duration_s: float) -> dict[str, Any]:
    start_at_s = time.time() + 0.3
    args = {"kind": kind, "rate_hz": rate_hz, "duration_s": duration_s, "start_at_s": start_at_s}
    results = await workers.call("load", [args] * len(workers.pipes))
    latencies = [x for r in results for x in r["latencies_ms"]]
    errors: dict[str, int] = defaultdict(int)
    for r in results:
        for code, n in r["errors"].items():
            errors[code] += n
    lost = sum(r["lost"] for r in results)
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "msgs_per_s": len(latencies) / duration_s,
        "errors": sum(errors.values()) + lost,
        "error_codes": dict(errors) | ({"lost": lost} if lost else {}),
    }


async def probe(target: Target, index: int, stop: asyncio.Event, samples: list[tuple[float, float]]) -> None:
    """Send a local event every few ms and record (sent wall time, latency ms)."""
    url = target.ws_url + f"?device_id=probe-{index}"
    async with connect(url, compression=None, ping_interval=None) as ws:
        await ws.send(identify_message(0, f"probe-{index}"))
        await ws.recv()
        pending: dict[int, tuple[float, float]] = {}

        async def reader() -> None:
            async for raw in ws:
                now = time.perf_counter()
                frame = orjson.loads(raw)
                sent = pending.pop(frame.get("request_id"), None)
                if sent is not None and frame.get("type") != "event":
                    samples.append((sent[0], (now - sent[1]) * 1000.0))

        reading = asyncio.create_task(reader())
        rid = 0
        await asyncio.sleep(index * PROBE_INTERVAL_S / PROBE_SOCKETS)
        while not stop.is_set():
            rid += 1
            pending[rid] = (time.time(), time.perf_counter())
            await ws.send(identify_message(rid, f"probe-{index}"))
            await asyncio.sleep(PROBE_INTERVAL_S)
        await asyncio.sleep(0.2)
        reading.cancel()


async def run_broadcasts(
    workers: Workers, target: Target, device_ids: list[str], n_broadcasts: int, session: aiohttp.ClientSession
) -> dict[str, float]:
    stop = asyncio.Event()
    samples: list[tuple[float, float]] = []
    probes = [asyncio.create_task(probe(target, i, stop, samples)) for i in range(PROBE_SOCKETS)]
    await asyncio.sleep(0.5)
    posted: dict[str, float] = {}
    for b in range(n_broadcasts):
        event = f"bench.push.{b}"
        body = target.broadcast_body(event, device_ids)
        posted[event] = time.time()
        async with session.post(target.broadcast_url, data=body, headers=target.broadcast_headers) as response:
            await response.read()
        await asyncio.sleep(BROADCAST_GAP_S)
    stop.set()
    await asyncio.gather(*probes, return_exceptions=True)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for events in await workers.call("events"):
        for name, times in events.items():
            arrivals[name].extend(times)
    reach_all_ms, per_device_ms, probe_max_ms, missing = [], [], [], 0
    for event, t0 in posted.items():
        times = arrivals.get(event, [])
        missing += len(device_ids) - len(times)
        if not times:
            continue
        t_end = max(times)
        reach_all_ms.append((t_end - t0) * 1000)
        per_device_ms.append(statistics.median((t - t0) * 1000 for t in times))
        during = [lat for sent, lat in samples if t0 - 0.002 <= sent <= t_end]
        probe_max_ms.append(max(during, default=0.0))
    return {
        "all_ms": statistics.median(reach_all_ms) if reach_all_ms else float("nan"),
        "per_device_p50_ms": statistics.median(per_device_ms) if per_device_ms else float("nan"),
        "probe_max_ms": statistics.median(probe_max_ms) if probe_max_ms else float("nan"),
        "probe_max_worst_ms": max(probe_max_ms, default=float("nan")),
        "missing": missing,
    }


async def one_round(
    workers: Workers, target: Target, args: argparse.Namespace, session: aiohttp.ClientSession, rnd: int
) -> dict[str, float]:
    figures: dict[str, float] = {}
    devices = [f"bench-{target.name}-{rnd}-{i}" for i in range(args.clients)]
    figures["connect_1000_s"] = await connect_devices(workers, target, devices)
    await asyncio.sleep(0.5)
    local = await run_load(workers, "local", 5.0, args.duration)
    figures |= {f"local_1000x5_{k}": v for k, v in local.items() if k != "error_codes"}
    routed = await run_load(workers, "routed", 2.0, args.duration)
    figures |= {f"routed_1000x2_{k}": v for k, v in routed.items() if k != "error_codes"}
    broadcast = await run_broadcasts(workers, target, devices, args.broadcasts, session)
    figures |= {f"broadcast_1000_{k}": v for k, v in broadcast.items()}
    await workers.call("close")
    await asyncio.sleep(0.5)
    small = [f"bench-{target.name}-{rnd}-small-{i}" for i in range(args.small_clients)]
    await connect_devices(workers, target, small)
    await asyncio.sleep(0.3)
    routed_small = await run_load(workers, "routed", 5.0, args.duration)
    figures |= {f"routed_200x5_{k}": v for k, v in routed_small.items() if k != "error_codes"}
    await workers.call("close")
    await asyncio.sleep(0.5)
    for name, result in (("local 1000x5", local), ("routed 1000x2", routed), ("routed 200x5", routed_small)):
        if result["error_codes"]:
            print(f"    {target.name} {name}: errors {result['error_codes']}", flush=True)
    return figures


def start_bare(port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **UVICORN_ENV}
    log = open(log_dir / "bare.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "gateway_bare:create_app", "--app-dir", str(BENCH_DIR),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not healthy")
            await asyncio.sleep(0.1)


def print_table(medians: dict[str, dict[str, float]]) -> None:
    gateway, bare = medians["gateway"], medians["bare"]
    print(f"\n{'figure':<34} {'gateway':>10} {'bare':>10} {'ratio':>7} {'target':>9}")
    for key in gateway:
        g, b = gateway[key], bare.get(key, float("nan"))
        ratio = g / b if b else float("nan")
        target = TARGETS_MS.get(key)
        mark = "" if target is None else (f"<= {target:g}" + (" ok" if g <= target else " MISS"))
        print(f"{key:<34} {g:>10.2f} {b:>10.2f} {ratio:>7.2f} {mark:>9}")


async def main_async(args: argparse.Namespace) -> int:
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    stub_port, bare_port = free_port(), free_port()
    stub = subprocess.Popen([sys.executable, str(BENCH_DIR / "gateway_stub.py"), str(stub_port)])
    stub_url = f"http://127.0.0.1:{stub_port}"
    config = SuiteConfig.on_free_ports(
        data_dir=work_dir / "data",
        state_dir=work_dir / "state",
        services=("gateway",),
        internal_auth_token=TOKEN,
        log_level=args.log_level,
        extra_env={
            "gateway": {
                "LOBBY_URL": stub_url,
                "MEASUREMENT_URL": stub_url,
                "SIMULATION_URL": stub_url,
                "RATE_LIMIT_RPS": "500",
                "RATE_LIMIT_BURST": "500",
                **UVICORN_ENV,
            }
        },
    )
    suite = Suite(config, log_dir=work_dir / "logs")
    bare = start_bare(bare_port, work_dir)
    workers = Workers(args.workers)
    try:
        suite.start(timeout_s=60)
        await wait_healthy(f"http://127.0.0.1:{bare_port}/healthz")
        gw = config.url("gateway")
        targets = {
            "bare": Target("bare", f"ws://127.0.0.1:{bare_port}/ws", f"http://127.0.0.1:{bare_port}/broadcast", {}),
            "gateway": Target(
                "gateway",
                gw.replace("http://", "ws://") + "/ws",
                gw + "/internal/broadcast",
                {"X-Internal-Token": TOKEN, "Content-Type": "application/json"},
            ),
        }
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        print(f"gateway_load {started}: {args.rounds} rounds, {args.duration:g}s per load, "
              f"{args.workers} client processes, LOG_LEVEL={args.log_level}", flush=True)  # fmt: skip
        rounds: dict[str, list[dict[str, float]]] = {"gateway": [], "bare": []}
        async with aiohttp.ClientSession() as session:
            for rnd in range(args.rounds):
                order = ("bare", "gateway") if rnd % 2 == 0 else ("gateway", "bare")
                for name in order:
                    figures = await one_round(workers, targets[name], args, session, rnd)
                    rounds[name].append(figures)
                    print(
                        f"  round {rnd + 1} {name:<7} connect {figures['connect_1000_s']:.2f}s  "
                        f"local p99 {figures['local_1000x5_p99_ms']:.1f}ms  "
                        f"routed1000 p99 {figures['routed_1000x2_p99_ms']:.1f}ms  "
                        f"routed200 p99 {figures['routed_200x5_p99_ms']:.1f}ms  "
                        f"broadcast {figures['broadcast_1000_all_ms']:.1f}ms "
                        f"(probe max {figures['broadcast_1000_probe_max_ms']:.1f}ms)",
                        flush=True,
                    )
        medians = {
            name: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for name, results in rounds.items()
        }
        print_table(medians)
        out_dir = BENCH_DIR / "results"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"gateway_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
        record = {"started": started, "args": vars(args), "rounds": rounds, "medians": medians}
        out.write_text(json.dumps(record, indent=1))
        print(f"\nper-round figures: {out}\ngateway log: {work_dir / 'logs' / 'gateway.log'}")
        return 0
    finally:
        await workers.stop()
        suite.stop()
        bare.terminate()
        stub.terminate()
        bare.wait(10)
        stub.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s loads (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load figure")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--small-clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=5, help="broadcasts per round")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--log-level", default="INFO", help="the gateway's LOG_LEVEL")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.broadcasts = 1, 3.0, 3
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
