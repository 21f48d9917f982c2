"""Two gateways on a Redis backplane with 2000 devices against one gateway with 1000, and the backplane's
cost per push.

    .venv/bin/python bench/gateway_backplane.py                 # 1 round (~2 min)
    .venv/bin/python bench/gateway_backplane.py --rounds 3 --duration 10

Setups (every service URL on bench/gateway_stub.py, which answers at once, so the gateways are measured):

- ``one``: one gateway, no ``REDIS_URL`` (today's in-process path), N devices (``--clients``, 1000);
- ``two``: two gateways on Redis (``--redis-url``, a fresh key prefix), 2 x N devices, half on each;
- ``split``: the same two gateways with N devices in all (N/2 on each): the same load as ``one``, so its
  ratio shows what the second gateway and the backplane cost at equal work, while ``two``'s also shows
  a machine doing twice the work (on one machine the gateways share its CPUs).

Figures per setup: connect + identify of all devices at once; routed event (``lobby.bench``) p50/p99 at
every device x 2/s; one broadcast to every device posted to the first gateway's internal listener (in
``two`` half the devices are on the other gateway: the backplane carries them), time until the last
device has it, several times. Then the cost of one push to one device: ``local`` (the device is on the
gateway the push is posted to) against ``remote`` (on the other gateway), sequential pushes, round-trip
time of ``POST /internal/broadcast`` and CPU of both gateways and of redis-server per push (from
/proc; redis-server's when it runs on this machine). Ratios: ``two`` / ``one``. Benchmarks print; they
never fail a test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from websockets.asyncio.client import connect

BENCH_DIR: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from gateway_load import (  # noqa: E402
    GATEWAY_ENV,
    TOKEN,
    Target,
    Workers,
    fmt,
    percentile,
    run_broadcasts,
    run_load,
    start_process,
)
from gateway_loadgen import identify_message  # noqa: E402

from sonalyze_suite.launcher import Suite, SuiteConfig, check_redis, free_port  # noqa: E402

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
HEADERS: Final = {"X-Internal-Token": TOKEN, "Content-Type": "application/json"}


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it cannot be read)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def redis_pid(url: str) -> int | None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        info = await client.info("server")
        pid = int(info["process_id"])
    except Exception:
        return None
    finally:
        await client.aclose()
    return pid if Path(f"/proc/{pid}").exists() else None


async def connect_spread(workers: Workers, ws_urls: list[str], device_ids: list[str]) -> float:
    """Worker i connects its share of the devices to gateway i mod len(ws_urls), all at once."""
    start_at_s = time.time() + 0.3
    parts = workers.split(device_ids)
    args = [
        {"url": ws_urls[i % len(ws_urls)], "device_ids": part, "start_at_s": start_at_s} for i, part in enumerate(parts)
    ]
    results = await workers.call("connect", args)
    failed = sum(r["failed"] for r in results)
    if failed:
        print(f"    {failed} of {len(device_ids)} devices failed to connect", flush=True)
    return max(r["finished_s"] for r in results) - min(r["started_s"] for r in results)


async def push_cost(
    ws_urls: list[str], internal_url: str, pids: list[int | None], n_pushes: int
) -> dict[str, dict[str, float]]:
    """Sequential one-device pushes posted to the first gateway: to a device there, and to one on the last."""
    devices = {"local": f"cost-local-{uuid.uuid4().hex[:6]}", "remote": f"cost-remote-{uuid.uuid4().hex[:6]}"}
    urls = {"local": ws_urls[0], "remote": ws_urls[-1]}
    figures: dict[str, dict[str, float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        sockets = {}
        for kind, device in devices.items():
            ws = await stack.enter_async_context(connect(urls[kind] + f"?device_id={device}", compression=None))
            await ws.send(identify_message(0, device))
            while orjson.loads(await ws.recv()).get("type") != "response":
                pass
            sockets[kind] = ws
        session = await stack.enter_async_context(aiohttp.ClientSession())
        for kind in ("local", "remote", "local", "remote"):  # twice each, interleaved; the second pass is kept
            device, ws = devices[kind], sockets[kind]
            body = orjson.dumps({"device_ids": [device], "event": "cost", "data": {"n": 1}})
            round_trips_ms: list[float] = []
            cpu_before = [cpu_s(pid) for pid in pids]
            for _ in range(n_pushes):
                started = time.perf_counter()
                async with session.post(internal_url + "/internal/broadcast", data=body, headers=HEADERS) as response:
                    answer = await response.json()
                round_trips_ms.append((time.perf_counter() - started) * 1000)
                assert answer["delivered"] == [device], answer
                await ws.recv()  # the device has it before the next one goes
            cpu_after = [cpu_s(pid) for pid in pids]
            per_push_us = [(a - b) / n_pushes * 1e6 for a, b in zip(cpu_after, cpu_before, strict=True)]
            figures[kind] = {
                "round_trip_p50_ms": percentile(round_trips_ms, 50),
                "round_trip_p99_ms": percentile(round_trips_ms, 99),
                "cpu_us_per_push": sum(per_push_us),
                **{
                    f"cpu_us_{name}": v for name, v in zip(("gateway", "gateway-2", "redis"), per_push_us, strict=False)
                },
            }
    return figures


async def one_setup(
    name: str, args: argparse.Namespace, work_dir: Path, stub_url: str, workers: Workers, rnd: int
) -> dict[str, Any]:
    replicas = 1 if name == "one" else 2
    n_devices = args.clients * (2 if name == "two" else 1)
    backends = {"LOBBY_URL": stub_url, "MEASUREMENT_URL": stub_url, "SIMULATION_URL": stub_url}
    config = SuiteConfig.on_free_ports(
        data_dir=work_dir / name / "data",
        state_dir=work_dir / name / "state",
        services=("gateway",),
        internal_auth_token=TOKEN,
        log_level=args.log_level,
        gateway_replicas=replicas,
        redis_url=args.redis_url if replicas > 1 else None,
        redis_key_prefix=f"bench-{uuid.uuid4().hex[:8]}:",
        extra_env={"gateway": {**backends, **GATEWAY_ENV}},
    )
    suite = Suite(config, log_dir=work_dir / name / f"logs-{rnd}")
    suite.start(timeout_s=90)
    try:
        ws_urls = [config.url(n).replace("http://", "ws://") + "/ws" for n in config.gateway_names]
        internal_url = config.internal_url("gateway")
        target = Target(name, ws_urls[0], internal_url + "/internal/broadcast", [], dict(HEADERS))
        devices = [f"bp-{name}-{rnd}-{i}" for i in range(n_devices)]
        figures: dict[str, Any] = {"devices": n_devices}
        figures["connect_s"] = await connect_spread(workers, ws_urls, devices)
        await asyncio.sleep(args.settle)
        routed = await run_load(workers, target, "routed", args.rate, args.duration)
        figures |= {f"routed_{k}": routed[k] for k in ("p50_ms", "p99_ms", "msgs_per_s", "errors")}
        async with aiohttp.ClientSession() as session:
            broadcast = await run_broadcasts(workers, target, devices, args.broadcasts, session)
        figures |= {f"broadcast_{k}": v for k, v in broadcast.items()}
        await workers.call("close")
        await asyncio.sleep(0.5)
        pids = [suite.children[n].process.pid for n in config.gateway_names]
        pids.append(await redis_pid(args.redis_url) if replicas > 1 else None)
        if replicas > 1:
            figures["push"] = await push_cost(ws_urls, internal_url, pids, args.pushes)
        return figures
    finally:
        suite.stop()


async def main_async(args: argparse.Namespace) -> int:
    if problem := check_redis(args.redis_url):
        print(f"gateway_backplane needs Redis: {problem}", file=sys.stderr)
        return 1
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-backplane-"))
    load = os.getloadavg()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"gateway_backplane {started_at}: {args.clients} devices per gateway, {args.rounds} round(s), "
          f"{args.duration:g}s routed load at {args.rate:g}/s per device, {args.broadcasts} broadcasts, {args.pushes} pushes per cost figure, "
          f"{args.workers} client processes; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    stub_port = free_port()
    stub = start_process([sys.executable, str(BENCH_DIR / "gateway_stub.py"), str(stub_port)], work_dir / "stub.log")
    workers = Workers(args.workers, args.client_cpu)
    setups = ("one", "two", "split")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    try:
        await asyncio.sleep(0.5)
        for rnd in range(args.rounds):
            for name in setups[rnd % 3 :] + setups[: rnd % 3]:
                figures = await one_setup(name, args, work_dir, f"http://127.0.0.1:{stub_port}", workers, rnd)
                rounds[name].append(figures)
                print(f"  round {rnd + 1} {name}: {figures['devices']} devices, connect {figures['connect_s']:.2f}s, "
                      f"routed p50/p99 {figures['routed_p50_ms']:.1f}/{figures['routed_p99_ms']:.1f}ms "
                      f"({figures['routed_errors']} errors), broadcast to all {figures['broadcast_all_ms']:.1f}ms "
                      f"({figures['broadcast_missing']} missing)", flush=True)  # fmt: skip
    finally:
        await workers.stop()
        stub.terminate()
        stub.wait(10)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name])

    load = os.getloadavg()
    print(f"\nmedians of {args.rounds} round(s); load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'figure':<30} {'one':>8} {'two':>8} {'ratio':>6} {'split':>8} {'ratio':>6}")
    for key in ("devices", "connect_s", "routed_p50_ms", "routed_p99_ms", "routed_msgs_per_s", "routed_errors",
                "broadcast_all_ms", "broadcast_per_device_p50_ms", "broadcast_probe_max_ms", "broadcast_missing"):  # fmt: skip
        one, two, split = median("one", key), median("two", key), median("split", key)
        print(
            f"{key:<30} {fmt(one):>8} {fmt(two):>8} {fmt(two / one) if one else '-':>6}"
            f" {fmt(split):>8} {fmt(split / one) if one else '-':>6}"
        )
    print(f"\none push to one device, posted to gateway 1 ({args.pushes} sequential; two and split):")
    print(f"{'figure':<34} {'local':>9} {'remote':>9} {'extra':>9}")
    pushes = [r["push"] for name in ("two", "split") for r in rounds[name]]
    for key in pushes[0]["local"]:
        local = statistics.median(p["local"][key] for p in pushes)
        remote = statistics.median(p["remote"][key] for p in pushes)
        print(f"{key:<34} {fmt(local):>9} {fmt(remote):>9} {fmt(remote - local):>9}")
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"gateway_backplane-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"started": started_at, "args": vars(args), "rounds": rounds}, indent=1))
    print(f"\nper-round figures: {out}\ngateway logs: {work_dir}/<setup>/logs-<round>/")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="devices per gateway")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of routed load")
    parser.add_argument("--rate", type=float, default=2.0, help="routed events per device per second")
    parser.add_argument("--broadcasts", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=300, help="sequential pushes per cost figure")
    parser.add_argument("--workers", type=int, default=2, help="client processes (worker i on gateway i mod 2)")
    parser.add_argument("--client-cpu", type=int, default=None, help="pin the client processes to this CPU")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="INFO")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
