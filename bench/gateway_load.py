"""Gateway load benchmark: the real suite (SQLite, PostgreSQL) and the stubbed gateway, each against a
bare FastAPI echo, interleaved; medians printed with their ratio to the bare echo.

    .venv/bin/python bench/gateway_load.py --client-cpu 1      # 3 rounds, all targets (~14 min)
    .venv/bin/python bench/gateway_load.py --quick             # 1 round, short loads (~2.5 min)
    .venv/bin/python bench/gateway_load.py --targets bare,sqlite --rounds 1

Targets (``--targets``, all by default):

- ``bare``: bench/gateway_bare.py, a FastAPI echo with the gateway's uvicorn flags: the floor;
- ``stub``: the gateway as the launcher starts it, every service URL on a stub that answers at once
  (bench/gateway_stub.py): what the gateway itself costs;
- ``sqlite``: the whole suite started by the launcher (sonalyze_suite), lobby and storage on SQLite,
  recording into storage through the outboxes as ``make run`` does;
- ``postgres``: the same on fresh PostgreSQL databases made from ``--postgres-url`` (skipped when
  that server does not answer).

Each round measures every target in turn (the order rotates between rounds):

- connect + identify of N=1000 new devices, all at once (time until the last one is identified);
- a local event (``identify``) at 1000 x 5/s: latency p50/p95/p99, errors;
- a routed event at 1000 x 2/s and at 200 x 5/s: ``lobby.get`` of a well-formed code no lobby has
  (one database read; its ``not_found`` answer counts as served) on the real suite, ``lobby.bench``
  on the stub; the bare echo echoes;
- one broadcast to all 1000, several times: time until the last device has it, per-device p50, and
  the longest wait of probe requests sent meanwhile;
- overload: 1000 clients x 3/s routed (3000 messages/s) for ``--overload-duration``: the share of
  messages answered within 1 s (a response or ``overloaded``), the slowest answer, how many got
  ``overloaded``, none lost, no socket closed; then, 1 s after the load stops, the slowest ``/health``
  of every service of the target.

The gateways run with RATE_LIMIT_RPS=500 so the probes are not throttled (load clients stay at
5/s or less). Client processes (``--workers``) can be pinned to one CPU (``--client-cpu``), as in the
issue's measurements. Benchmarks print; they never fail a test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from websockets.asyncio.client import connect

from sonalyze_suite.launcher import Suite, SuiteConfig, free_port
from sonalyze_suite.services import GATEWAY_UVICORN_ARGS, SERVICE_BY_NAME

BENCH_DIR: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from gateway_loadgen import identify_message, worker_main  # noqa: E402

# the bare echo runs with the gateway's uvicorn flags (GATEWAY_UVICORN_ARGS: the same WebSocket
# implementation, no deflate), as make run and the Dockerfile start the gateway
UVICORN_ENV: Final = {"UVICORN_WS_PER_MESSAGE_DEFLATE": "false"}
TOKEN: Final = "bench-token"
PROBE_SOCKETS: Final = 2
PROBE_INTERVAL_S: Final = 0.004
BROADCAST_GAP_S: Final = 0.6
ANSWER_BOUND_MS: Final = 1000.0
HEALTH_AFTER_S: Final = 1.0
DEFAULT_POSTGRES_URL: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
ALL_TARGETS: Final = ("bare", "stub", "sqlite", "postgres")
# a well-formed lobby code (codes.py alphabet) that no lobby has: the lobby reads its database and says not_found
UNKNOWN_CODE: Final = "ZZZZ22"
LOBBY_GET_UNKNOWN: Final = '{"event":"lobby.get","request_id":%d,"data":{"code":"' + UNKNOWN_CODE + '"}}'

# the issue's targets: (figure, test, bound); "max": figure <= bound, "ratio": figure / bare <= bound
TARGETS: Final[tuple[tuple[str, str, float], ...]] = (
    ("connect_1000_s", "max", 2.0),
    ("local_1000x5_p99_ms", "max", 15.0),
    ("routed_200x5_p99_ms", "max", 25.0),
    ("routed_200x5_errors", "max", 0),
    ("routed_1000x2_p99_ms", "max", 50.0),
    ("routed_1000x2_errors", "max", 0),
    ("broadcast_1000_all_ms", "ratio", 1.5),
    ("broadcast_1000_probe_max_ms", "max", 15.0),
    ("overload_3000_within_1s_pct", "min", 100.0),
    ("overload_3000_max_ms", "max", ANSWER_BOUND_MS),
    ("overload_3000_lost", "max", 0),
    ("overload_3000_closed", "max", 0),
    ("overload_health_max_ms", "max", 100.0),
)


@dataclass
class Target:
    name: str
    ws_url: str
    broadcast_url: str
    health_urls: list[str]
    broadcast_headers: dict[str, str] = field(default_factory=dict)
    routed: str = ""  # the routed message (``%d`` = request id); empty: the load client's default
    answer_codes: tuple[str, ...] = ()  # error codes that answer the routed message as intended

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
    def __init__(self, n: int, cpu: int | None) -> None:
        context = mp.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            if cpu is not None:
                os.sched_setaffinity(process.pid, {cpu})
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


async def run_load(
    workers: Workers, target: Target, kind: str, rate_hz: float, duration_s: float, start_at_s: float | None = None
) -> dict[str, Any]:
    start_at_s = start_at_s or time.time() + 0.3
    args = {"kind": kind, "rate_hz": rate_hz, "duration_s": duration_s, "start_at_s": start_at_s,
            "routed": target.routed, "answer_codes": target.answer_codes}  # fmt: skip
    results = await workers.call("load", [args] * len(workers.pipes))
    latencies = [x for r in results for x in r["latencies_ms"]]
    answers = [x for r in results for x in r["answer_ms"]]
    errors: dict[str, int] = defaultdict(int)
    for r in results:
        for code, n in r["errors"].items():
            errors[code] += n
    lost = sum(r["lost"] for r in results)
    sent = sum(r["sent"] for r in results)
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(answers, default=float("nan")),
        "msgs_per_s": len(latencies) / duration_s,
        "errors": sum(errors.values()) + lost,
        "error_codes": dict(errors) | ({"lost": lost} if lost else {}),
        "sent": sent,
        "lost": lost,
        "within_1s_pct": 100.0 * sum(1 for a in answers if a <= ANSWER_BOUND_MS) / sent if sent else float("nan"),
        "overloaded": errors.get("overloaded", 0),
        "closed": sum(r["closed"] for r in results),
    }


async def slowest_health_ms(urls: list[str], at_s: float) -> float:
    """Wait until wall time ``at_s``, then ask every health URL at once; the slowest answer in ms."""
    await asyncio.sleep(max(0.0, at_s - time.time()))

    async def one(session: aiohttp.ClientSession, url: str) -> float:
        started = time.perf_counter()
        try:
            async with session.get(url) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return float("inf")
        return (time.perf_counter() - started) * 1000

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return max(await asyncio.gather(*(one(session, url) for url in urls)))


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


LOAD_KEYS: Final = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "msgs_per_s", "errors")


async def one_round(
    workers: Workers, target: Target, args: argparse.Namespace, session: aiohttp.ClientSession, rnd: int
) -> dict[str, float]:
    figures: dict[str, float] = {}
    reports: list[tuple[str, dict[str, Any]]] = []
    devices = [f"bench-{target.name}-{rnd}-{i}" for i in range(args.clients)]
    figures["connect_1000_s"] = await connect_devices(workers, target, devices)
    await asyncio.sleep(args.settle)
    local = await run_load(workers, target, "local", 5.0, args.duration)
    figures |= {f"local_1000x5_{k}": local[k] for k in LOAD_KEYS}
    routed = await run_load(workers, target, "routed", 2.0, args.duration)
    figures |= {f"routed_1000x2_{k}": routed[k] for k in LOAD_KEYS}
    broadcast = await run_broadcasts(workers, target, devices, args.broadcasts, session)
    figures |= {f"broadcast_1000_{k}": v for k, v in broadcast.items()}
    load_end_s = time.time() + 0.3 + args.overload_duration
    health = asyncio.create_task(slowest_health_ms(target.health_urls, load_end_s + HEALTH_AFTER_S))
    overload = await run_load(
        workers, target, "routed", 3.0, args.overload_duration, load_end_s - args.overload_duration
    )
    figures |= {
        "overload_3000_within_1s_pct": overload["within_1s_pct"],
        "overload_3000_max_ms": overload["max_ms"],
        "overload_3000_served_per_s": overload["msgs_per_s"],
        "overload_3000_overloaded": overload["overloaded"],
        "overload_3000_lost": overload["lost"],
        "overload_3000_closed": overload["closed"],
        "overload_health_max_ms": await health,
    }
    reports += [("local 1000x5", local), ("routed 1000x2", routed), ("overload 1000x3", overload)]
    await workers.call("close")
    await asyncio.sleep(0.5)
    small = [f"bench-{target.name}-{rnd}-small-{i}" for i in range(args.small_clients)]
    await connect_devices(workers, target, small)
    await asyncio.sleep(args.settle)
    routed_small = await run_load(workers, target, "routed", 5.0, args.duration)
    figures |= {f"routed_200x5_{k}": routed_small[k] for k in LOAD_KEYS}
    reports.append(("routed 200x5", routed_small))
    await workers.call("close")
    await asyncio.sleep(0.5)
    for name, result in reports:
        if result["error_codes"]:
            print(f"    {target.name} {name}: error answers {result['error_codes']}", flush=True)
    return figures


def start_process(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115
    env = {**os.environ, **UVICORN_ENV}
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


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


GATEWAY_ENV: Final = {"RATE_LIMIT_RPS": "500", "RATE_LIMIT_BURST": "500", **UVICORN_ENV}


def suite_target(name: str, suite: Suite, **kwargs: Any) -> Target:
    """The target of a suite started by the launcher; broadcasts go where the services send theirs."""
    config = suite.config
    gateway_url = config.service_env(SERVICE_BY_NAME["lobby"])["GATEWAY_URL"]
    return Target(
        name,
        config.url("gateway").replace("http://", "ws://") + "/ws",
        gateway_url + "/internal/broadcast",
        [suite.health_url(service) for service in config.services],
        {"X-Internal-Token": TOKEN, "Content-Type": "application/json"},
        **kwargs,
    )


@contextlib.contextmanager
def started(suite: Suite) -> Iterator[Suite]:
    try:
        suite.start(timeout_s=120)
        yield suite
    finally:
        suite.stop()


async def postgres_databases(admin_url: str) -> tuple[str, str] | None:
    from sonalyze_suite.testing import create_database

    try:
        return await create_database(admin_url, "bench_lobby"), await create_database(admin_url, "bench_storage")
    except Exception as exc:
        print(f"postgres target skipped: {type(exc).__name__}: {exc}", flush=True)
        return None


async def drop_postgres(admin_url: str, urls: tuple[str, str] | None) -> None:
    from sonalyze_suite.testing import drop_database

    for url in urls or ():
        with contextlib.suppress(Exception):
            await drop_database(admin_url, url)


def fmt(value: float) -> str:
    if value != value:  # nan
        return "-"
    if value in (float("inf"), float("-inf")):
        return "inf"
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"


def verdict(key: str, value: float, bare: float) -> str:
    for figure, test, bound in TARGETS:
        if figure != key:
            continue
        if test == "ratio":
            if not bare > 0:  # the bare echo was not run (--targets): nothing to compare with
                return f"<= {bound:g}x bare n/a"
            return f"<= {bound:g}x bare " + ("ok" if value / bare <= bound else "MISS")
        ok = value <= bound if test == "max" else value >= bound
        return f"{'<=' if test == 'max' else '>='} {bound:g} " + ("ok" if ok else "MISS")
    return ""


# the issue's figures, in its order: (label, figure key, target as the issue states it)
ISSUE_FIGURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("routed lobby.get 200x5/s p99 ms", "routed_200x5_p99_ms", "<= 25"),
    ("routed lobby.get 200x5/s errors", "routed_200x5_errors", "0"),
    ("routed lobby.get 1000x2/s p99 ms", "routed_1000x2_p99_ms", "<= 50"),
    ("routed lobby.get 1000x2/s errors", "routed_1000x2_errors", "0"),
    ("local identify 1000x5/s p99 ms", "local_1000x5_p99_ms", "<= 15"),
    ("broadcast to 1000, time-to-all ms", "broadcast_1000_all_ms", "<= 1.5x bare"),
    ("overload 3000/s: answered <1 s %", "overload_3000_within_1s_pct", "100"),
    ("overload 3000/s: slowest answer ms", "overload_3000_max_ms", "<= 1000"),
    ("overload 3000/s: lost (no answer)", "overload_3000_lost", "0"),
    ("overload 3000/s: sockets closed", "overload_3000_closed", "0"),
    ("overload 3000/s: overloaded answers", "overload_3000_overloaded", ""),
    ("/health of every service 1 s after ms", "overload_health_max_ms", "<= 100"),
)
COLUMN_TITLES: Final = {
    "sqlite": "real suite, SQLite",
    "postgres": "real suite, PostgreSQL",
    "stub": "stub (gateway alone)",
}


def cell(medians: dict[str, dict[str, float]], name: str, key: str, bare: float) -> str:
    """``value (ratio to bare) ok|MISS`` of one target's figure."""
    value = medians[name].get(key, float("nan"))
    mark = verdict(key, value, bare).rpartition(" ")[2]
    if not (bare and bare == bare and value == value):  # a count the bare echo has none of: no ratio
        return f"{fmt(value)} {mark}".rstrip()
    return f"{fmt(value)} ({fmt(value / bare)}x) {mark}".rstrip()


def print_issue_table(medians: dict[str, dict[str, float]], loads: dict[str, list[float]]) -> None:
    """The issue's figures: the real suite on SQLite and PostgreSQL side by side, then the stub, each
    with its ratio to the bare echo and its verdict; the load average each target was measured at."""
    names = [n for n in ("sqlite", "postgres", "stub") if n in medians]
    bare = medians.get("bare", {})
    width = 26
    print("\nissue 13 figures: value (ratio to the bare echo) verdict; medians of the rounds. Routed: lobby.get of "
          "an unknown code on the real suite (a database read), an echo on the stub and the bare echo")  # fmt: skip
    print(f"{'figure':<38} {'target':<13} {'bare echo':>9}  " + "".join(f"{COLUMN_TITLES[n]:<{width}}" for n in names))
    for label, key, target in ISSUE_FIGURES:
        b = bare.get(key, float("nan"))
        print(
            f"{label:<38} {target:<13} {fmt(b):>9}  " + "".join(f"{cell(medians, n, key, b):<{width}}" for n in names)
        )
    load_line = "".join(f"{'/'.join(f'{x:.1f}' for x in loads.get(n, [])):<{width}}" for n in names)
    print(f"{'load average (1 min) per round':<38} {'':<13} {'/'.join(f'{x:.1f}' for x in loads.get('bare', [])):>9}  "
          + load_line)  # fmt: skip


def print_table(medians: dict[str, dict[str, float]]) -> None:
    """Every figure of every target beside the bare echo's."""
    names = [n for n in ALL_TARGETS if n in medians and n != "bare"]
    bare = medians.get("bare", {})
    print("\nall figures (sqlite, postgres: the real suite; stub: the gateway alone in front of a stub)")
    header = f"{'figure':<34} {'bare':>8}" + "".join(f" {n:>9} {'ratio':>6} {'target':<18}" for n in names)
    print(header)
    keys = list(dict.fromkeys(k for n in names for k in medians[n]))
    for key in keys:
        b = bare.get(key, float("nan"))
        line = f"{key:<34} {fmt(b):>8}"
        for n in names:
            v = medians[n].get(key, float("nan"))
            ratio = v / b if b and b == b and v == v else float("nan")
            line += f" {fmt(v):>9} {fmt(ratio):>6} {verdict(key, v, b):<18}"
        print(line)


async def main_async(args: argparse.Namespace) -> int:
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    names = [n for n in ALL_TARGETS if n in args.targets]
    pg_urls = await postgres_databases(args.postgres_url) if "postgres" in names else None
    if "postgres" in names and pg_urls is None:
        names.remove("postgres")
    try:
        return await run_targets(args, names, pg_urls, work_dir)
    finally:  # after every suite has stopped
        await drop_postgres(args.postgres_url, pg_urls)


async def run_targets(
    args: argparse.Namespace, names: list[str], pg_urls: tuple[str, str] | None, work_dir: Path
) -> int:
    processes: list[subprocess.Popen[bytes]] = []
    targets: dict[str, Target] = {}
    with contextlib.ExitStack() as stack:
        try:
            if "bare" in names:
                port = free_port()
                processes.append(start_process(
                    [sys.executable, "-m", "uvicorn", "--factory", "gateway_bare:create_app", "--app-dir",
                     str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                     "--log-level", "warning", *GATEWAY_UVICORN_ARGS], work_dir / "bare.log"))  # fmt: skip
                await wait_healthy(f"http://127.0.0.1:{port}/healthz")
                base = f"127.0.0.1:{port}"
                targets["bare"] = Target(
                    "bare", f"ws://{base}/ws", f"http://{base}/broadcast", [f"http://{base}/healthz"]
                )
            if "stub" in names:
                stub_port = free_port()
                processes.append(start_process([sys.executable, str(BENCH_DIR / "gateway_stub.py"), str(stub_port)],
                                               work_dir / "stub.log"))  # fmt: skip
                stub_url = f"http://127.0.0.1:{stub_port}"
                backends = dict.fromkeys(("LOBBY_URL", "MEASUREMENT_URL", "SIMULATION_URL", "STORAGE_URL"), stub_url)
                config = SuiteConfig.on_free_ports(
                    data_dir=work_dir / "stub" / "data", state_dir=work_dir / "stub" / "state", services=("gateway",),
                    internal_auth_token=TOKEN, log_level=args.log_level,
                    extra_env={"gateway": {**backends, **GATEWAY_ENV}},
                )  # fmt: skip
                suite = stack.enter_context(started(Suite(config, log_dir=work_dir / "stub" / "logs")))
                targets["stub"] = suite_target("stub", suite)
            for name in ("sqlite", "postgres"):
                if name not in names:
                    continue
                config = SuiteConfig.on_free_ports(
                    data_dir=work_dir / name / "data", state_dir=work_dir / name / "state",
                    internal_auth_token=TOKEN, log_level=args.log_level, extra_env={"gateway": GATEWAY_ENV},
                    lobby_database_url=pg_urls[0] if name == "postgres" and pg_urls else None,
                    storage_database_url=pg_urls[1] if name == "postgres" and pg_urls else None,
                )  # fmt: skip
                suite = stack.enter_context(started(Suite(config, log_dir=work_dir / name / "logs")))
                targets[name] = suite_target(name, suite, routed=LOBBY_GET_UNKNOWN, answer_codes=("not_found",))
            workers = Workers(args.workers, args.client_cpu)
            try:
                return await measure(args, names, targets, workers, work_dir)
            finally:
                await workers.stop()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)


async def measure(
    args: argparse.Namespace, names: list[str], targets: dict[str, Target], workers: Workers, work_dir: Path
) -> int:
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load = os.getloadavg()
    print(f"gateway_load {started_at}: targets {', '.join(names)}; {args.rounds} rounds, {args.duration:g}s per "
          f"load, overload {args.overload_duration:g}s, {args.workers} client processes"
          f"{'' if args.client_cpu is None else f' on CPU {args.client_cpu}'}, LOG_LEVEL={args.log_level}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    loads: dict[str, list[float]] = {name: [] for name in names}  # 1-minute load average, per round
    started_s = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                figures = await one_round(workers, targets[name], args, session, rnd)
                rounds[name].append(figures)
                loads[name].append(os.getloadavg()[0])
                print(
                    f"  round {rnd + 1} {name:<8} load {loads[name][-1]:4.1f}  "
                    f"connect {figures['connect_1000_s']:.2f}s  "
                    f"local p99 {figures['local_1000x5_p99_ms']:.1f}ms  "
                    f"routed1000 p99 {figures['routed_1000x2_p99_ms']:.1f}ms  "
                    f"routed200 p99 {figures['routed_200x5_p99_ms']:.1f}ms  "
                    f"broadcast {figures['broadcast_1000_all_ms']:.1f}ms  "
                    f"overload {figures['overload_3000_within_1s_pct']:.1f}% <1s "
                    f"(max {figures['overload_3000_max_ms']:.0f}ms, health {figures['overload_health_max_ms']:.0f}ms)",
                    flush=True,
                )
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in rounds.items()
    }
    load = os.getloadavg()
    elapsed_s = time.monotonic() - started_s
    print(f"\nmedians of {args.rounds} rounds, measured in {elapsed_s / 60:.1f} min; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
    print_issue_table(medians, loads)
    print_table(medians)
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"gateway_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"started": started_at, "args": vars(args), "rounds": rounds, "medians": medians, "load_avg_1min": loads}
    out.write_text(json.dumps(record, indent=1))
    print(f"\nper-round figures: {out}\nservice logs: {work_dir}/<target>/logs/")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s loads, 5 s overload (a smoke run)")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated: " + ", ".join(ALL_TARGETS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load figure")
    parser.add_argument("--overload-duration", type=float, default=20.0, help="seconds of 3000 messages/s")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--small-clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=10, help="broadcasts per round")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--client-cpu", type=int, default=None, help="pin the client processes to this CPU")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between connecting and loading")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES_URL)
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    args = parser.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.quick:
        args.rounds, args.duration, args.broadcasts, args.overload_duration = 1, 3.0, 3, 5.0
    started_s = time.monotonic()
    code = asyncio.run(main_async(args))
    print(f"whole run, suites' start and stop included: {(time.monotonic() - started_s) / 60:.1f} min")
    return code


if __name__ == "__main__":
    sys.exit(main())
