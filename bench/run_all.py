"""``make bench``: every benchmark in its quick form, one after the other, figures to stdout.

    .venv/bin/python bench/run_all.py            # quick forms (a few minutes)
    .venv/bin/python bench/run_all.py --full     # the full forms quoted in the closing notes

Each benchmark is its own script and can be run alone; this only strings them together. The machine's
own scheduling stalls make single figures noisy: the scripts interleave rounds and report medians.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# (script, quick arguments, full arguments)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("gateway_load.py", ["--quick"], []),
    ("lobby_cpu.py", [], []),
    ("gateway_clients.py", ["--rounds", "1"], []),
    ("gateway_identity.py", ["--connects", "50", "--reclaims", "1"], []),
    ("acoustics_parameters.py", ["--seeds", "1"], ["--pyrato"]),
    ("analysis.py", ["--quick"], []),
    ("simulation.py", ["--repeat", "1"], ["--repeat", "5"]),
    ("simulation_grid.py", ["--quick"], []),
    ("noisy_coverage.py", ["--quick"], []),
    ("lobby_concurrency.py", [], []),
    ("create_session.py", ["--sessions", "50"], []),
    ("storage_outbox.py", [], []),
    ("devices_load.py", ["--lobbies", "5"], ["--lobbies", "20"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run the full forms")
    parser.add_argument("only", nargs="*", help="run only these scripts (e.g. analysis.py)")
    args = parser.parse_args()
    failed = []
    for script, quick, full in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        command = [sys.executable, str(BENCH_DIR / script), *(full if args.full else quick)]
        print(f"\n=== {script} {' '.join(command[2:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(command).returncode != 0:
            failed.append(script)
        print(f"=== {script}: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
