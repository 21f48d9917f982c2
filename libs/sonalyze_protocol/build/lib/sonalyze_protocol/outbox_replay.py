"""Queue every dead letter of the services' outboxes again, after the cause was fixed.

    python -m sonalyze_protocol.outbox_replay [OUTBOX_DIR]      (default: $OUTBOX_DIR, else .run/outbox)
    python -m sonalyze_protocol.outbox_replay --list [OUTBOX_DIR]   (show them, change nothing)

Works on the ``<service>.outbox.sqlite3`` files whether the services run or not: a running service
delivers the entries within `outbox.IDLE_POLL_S`, a stopped one when it starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from sonalyze_protocol.outbox import OutboxStore
from sonalyze_protocol.storage_client import OUTBOX_FILE_SUFFIX


def replay(outbox_dir: Path, *, list_only: bool = False, out: TextIO = sys.stdout) -> int:
    """Requeue (or, with ``list_only``, list) the dead entries of every outbox file; returns how many."""
    total = 0
    for path in sorted(outbox_dir.glob(f"*{OUTBOX_FILE_SUFFIX}")):
        service = path.name.removesuffix(OUTBOX_FILE_SUFFIX)
        store = OutboxStore(path)
        try:
            dead = store.dead(10_000)
            for entry in dead if list_only else ():
                print(f"{service}: {entry.kind} {entry.key} ({entry.attempts} attempts): {entry.last_error}", file=out)
            count = len(dead) if list_only else store.requeue_dead()
        finally:
            store.close()
        total += count
        print(f"{service}: {count} dead {'entries' if list_only else 'entries queued again'}", file=out)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sonalyze_protocol.outbox_replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("outbox_dir", nargs="?", default=os.environ.get("OUTBOX_DIR") or ".run/outbox")
    parser.add_argument("--list", action="store_true", help="only list the dead entries")
    args = parser.parse_args(argv)
    directory = Path(args.outbox_dir)
    if not directory.is_dir():
        print(f"no outbox folder at {directory}", file=sys.stderr)
        return 1
    replay(directory, list_only=args.list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
