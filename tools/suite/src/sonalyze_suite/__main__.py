"""``python -m sonalyze_suite run``: what ``make run`` does.

Starts the five services on 127.0.0.1:8000-8004 (``GATEWAY_REPLICAS=N``: N gateways on 8000, 8010, ...
sharing the Redis backplane at ``REDIS_URL``, default ``redis://127.0.0.1:6379/0``) (``LOBBY_REPLICAS=2``: lobbies on
8001 and 8011 on the PostgreSQL database at ``LOBBY_DATABASE_URL``) (SQLite files under ``.run/``, recordings under
``./measurement_data``), waits until all are healthy, prints where they are, streams their logs
with a service prefix and stops them all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from sonalyze_suite.launcher import ServiceFailed, Suite, SuiteConfig
from sonalyze_suite.services import SERVICES


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def print_table(suite: Suite) -> None:
    config = suite.config
    gateway = config.url("gateway")
    ws = gateway.replace("http://", "ws://") + "/ws"
    replicas = {"gateway": config.gateway_names, "lobby": config.lobby_names}
    names = [n for s in SERVICES for n in replicas.get(s.name, [s.name])]
    rows = [(name, config.url(name), suite.health_url(name)) for name in names if name in suite.children]
    width = max(len(r[1]) for r in rows)
    print("\nSonalyze is running:\n", flush=True)
    print(f"  {'service':<12} {'url':<{width}}  health")
    for name, url, health in rows:
        print(f"  {name:<12} {url:<{width}}  {health}")
    print(f"\n  WebSocket     {ws}?device_id=<your-device>   (DEVICE_AUTH={config.device_auth})")
    print(f"  HTTP API      {gateway}/v1/...   (docs of each service at <url>/docs)")
    print(f"  internal      {config.gateway_internal_url}/internal/...   (services only; X-Internal-Token)")
    if config.gateway_replicas > 1:
        print(f"  gateways      {config.gateway_replicas} on one Redis backplane ({config.redis_url}); any of")
        print("                them reaches every device; a stopped one (SIGTERM) closes its sockets with 1012")
    if config.lobby_replicas > 1:
        print(f"  lobbies       {config.lobby_replicas} on one PostgreSQL database; each session is driven by one,")
        print("                another takes it over within seconds when it dies (lobby README, Replicas)")
    print(f"  recordings    {config.data_dir.resolve()}")
    print(f"  databases     {config.lobby_database_url or config.sqlite_url('lobby')}")
    print(f"                {config.storage_database_url or config.sqlite_url('storage')}")
    if config.token_generated:
        print("  note          INTERNAL_AUTH_TOKEN was generated for this run; set it to keep one across runs")
    if config.key_generated:
        print("  note          DEVICE_TOKEN_KEY was generated for this run: device credentials end with it")
    print("\nPress Ctrl-C to stop all services.\n", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        config = SuiteConfig.from_environment()
    except ValueError as exc:
        print(f"startup failed: {exc}", file=sys.stderr, flush=True)
        return 1
    if args.log_level:
        config.log_level = args.log_level
    suite = Suite(config, echo=sys.stdout)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        print("starting " + ", ".join(config.services) + " ...", flush=True)
        suite.start(timeout_s=args.timeout)
        print_table(suite)
        while True:
            if exited := suite.exited():
                for name, code in exited.items():
                    print(f"\n{name} exited with code {code}; stopping the others", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
    except ServiceFailed as exc:
        print(f"\nstartup failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, _Stop):
        print("\nstopping ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        suite.stop()
        print("all services stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sonalyze-suite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    run_parser = sub.add_parser("run", help="start all five services (default)")
    for p in (parser, run_parser):
        p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for health")
        p.add_argument("--log-level", default=None, help="overrides LOG_LEVEL")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
