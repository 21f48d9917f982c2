"""The CPU of one routed event, end to end: the gateway's and the lobby's share, measured on the real processes.

The gateway and the lobby are started by the launcher (SQLite); ``--sockets`` WebSocket clients (in this
process) identify, then each keeps ``--window`` ``lobby.get`` of an unknown code in flight until
``--events`` have been answered. Each service's CPU time (/proc) is divided by the events answered, so
the figures barely depend on the machine's load or on the client's own cost:

    .venv/bin/python bench/routed_cpu.py                  # ~15 s
    .venv/bin/python bench/routed_cpu.py --log-level WARNING
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Final

import orjson
from websockets.asyncio.client import connect

from sonalyze_suite.launcher import Suite, SuiteConfig

TOKEN: Final = "bench-token"
UNKNOWN_CODE: Final = "ZZZZ22"  # well-formed (codes.py alphabet), no lobby has it
GATEWAY_ENV: Final = {"RATE_LIMIT_RPS": "100000", "RATE_LIMIT_BURST": "100000"}


def process_cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


async def drive(ws_url: str, sockets: int, window: int, n_events: int) -> dict[str, int]:
    """Send ``n_events`` lobby.get spread over the sockets, ``window`` in flight per socket; count answers."""
    ids = itertools.count(1)
    remaining = [n_events]
    codes: dict[str, int] = {}

    async def socket(index: int) -> None:
        async with connect(ws_url, compression=None, ping_interval=None, max_queue=None) as ws:
            await ws.send(orjson.dumps({"event": "identify", "request_id": 0, "data": {"device_id": f"cpu-{index}"}}))
            while orjson.loads(await ws.recv()).get("type") != "response":
                pass
            await barrier.wait()
            in_flight = 0
            while remaining[0] > 0 or in_flight:
                while in_flight < window and remaining[0] > 0:
                    remaining[0] -= 1
                    in_flight += 1
                    data = {"code": UNKNOWN_CODE}
                    await ws.send(orjson.dumps({"event": "lobby.get", "request_id": next(ids), "data": data}))
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "event":
                    continue
                in_flight -= 1
                code = frame["error"]["code"] if frame.get("type") == "error" else "ok"
                codes[code] = codes.get(code, 0) + 1

    barrier = asyncio.Barrier(sockets + 1)
    tasks = [asyncio.create_task(socket(i)) for i in range(sockets)]
    await barrier.wait()
    await asyncio.gather(*tasks)
    return codes


async def main_async(args: argparse.Namespace) -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="routed-cpu-"))
    config = SuiteConfig.on_free_ports(
        data_dir=work_dir / "data", state_dir=work_dir / "state", services=("gateway", "lobby"),
        internal_auth_token=TOKEN, log_level=args.log_level, extra_env={"gateway": GATEWAY_ENV},
    )  # fmt: skip
    suite = Suite(config, log_dir=work_dir / "logs")
    suite.start(timeout_s=120)
    try:
        pids = {name: suite.children[name].process.pid for name in ("gateway", "lobby")}
        ws_url = config.url("gateway").replace("http://", "ws://") + "/ws"
        print(f"routed_cpu: gateway + lobby (SQLite), LOG_LEVEL={args.log_level}, {args.sockets} sockets x "
              f"{args.window} in flight; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
        await drive(ws_url, args.sockets, args.window, 300)  # warm up
        before = {name: process_cpu_s(pid) for name, pid in pids.items()}
        started_s = time.perf_counter()
        codes = await drive(ws_url, args.sockets, args.window, args.events)
        wall_s = time.perf_counter() - started_s
        after = {name: process_cpu_s(pid) for name, pid in pids.items()}
        user_ms = {name: 1000 * (after[name][0] - before[name][0]) / args.events for name in pids}
        system_ms = {name: 1000 * (after[name][1] - before[name][1]) / args.events for name in pids}
        cpu_ms = {name: user_ms[name] + system_ms[name] for name in pids}
        print(f"  answers {codes} in {wall_s:.1f} s ({args.events / wall_s:.0f}/s)")
        for name, ms in cpu_ms.items():
            print(f"  {name:<8} {ms:6.3f} ms CPU per routed lobby.get ({system_ms[name]:.3f} of it in the kernel)")
        print(f"  {'together':<8} {sum(cpu_ms.values()):6.3f} ms CPU per routed lobby.get; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    finally:
        suite.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (make run: INFO)")
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument(
        "--window",
        type=int,
        default=2,
        help="lobby.get in flight per socket (all of them below MAX_INFLIGHT_PER_SERVICE)",
    )
    parser.add_argument("--events", type=int, default=4000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
