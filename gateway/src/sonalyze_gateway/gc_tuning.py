"""Keeps CPython's garbage collector from stalling the event loop with many open sockets.

A collection walks every object of the generations it collects: ~165 per open socket (160 000 for
1000 sockets, ~110 ms here) plus the ~77 000 built at import (~80 ms more), and it holds up every
device at once. So whatever survives a collection is moved out of the collector's sight with
`gc.freeze()`: the startup objects once, then the survivors right after each collection (the
collected generations are empty then, so only live objects are frozen). A burst of 1000 new sockets
is thus walked once, by the next young collection, instead of again by every older one; in steady
traffic a young collection walks only the ~15 objects each socket has in flight. A burst of new
sockets would still pile up in the young generation (their allocation count is offset by what other
objects free), so every `COLLECT_EVERY_NEW_SOCKETS` opened sockets a young collection runs at once:
ten 4 ms pauses for 1000 sockets instead of one of 40 ms.

Frozen objects are still freed by reference counting when they die; what a reference cycle holds
stays, though: measured here, each closed socket leaves ~22 such objects (uvicorn's HTTP protocol of
the upgrade), and so would a cycle from some rarer path (an error's traceback). As a bound, once
`RECLAIM_AFTER_CLOSED_SOCKETS` sockets have closed since the last full look (no sooner than
`RECLAIM_MIN_INTERVAL_S`), and at the latest every `RECLAIM_MAX_INTERVAL_S`, everything is unfrozen,
collected once (one pause, ~300 ms with 1000 sockets) and frozen again. The trigger counts sockets,
not frozen objects: `gc.get_freeze_count()` walks the whole frozen list (15 ms with 1000 sockets).

All of this leans on CPython's collector as it is in the minors of :data:`TUNED_PYTHON_MINORS`: three
generations, collections reported through ``gc.callbacks``, young collections that leave the collected
generations empty. CPython 3.14's incremental collector changes that, so on any other interpreter only the
documented idiom runs: collect and freeze once at start-up. To add a minor, run
``gateway/tests/test_gc_tuning.py`` and ``bench/gateway_load.py`` under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, Final

logger = logging.getLogger("sonalyze.gateway.gc")

# young collections every 10 000 net allocations instead of 700: each costs about the same (it walks
# the objects in flight on every socket), so fewer of them means less pausing in total
GC_THRESHOLDS: Final = (10_000, 10, 10)
GC_PAUSE_LOG_MS: Final = 10.0
COLLECT_EVERY_NEW_SOCKETS: Final = 100
RECLAIM_AFTER_CLOSED_SOCKETS: Final = 5_000
RECLAIM_MIN_INTERVAL_S: Final = 300.0
RECLAIM_MAX_INTERVAL_S: Final = 3600.0
RECLAIM_CHECK_INTERVAL_S: Final = 10.0
TUNED_PYTHON_MINORS: Final = frozenset({(3, 11)})


def tuning_applies(version: tuple[int, int] | None = None, implementation: str | None = None) -> bool:
    """True on the interpreters whose collector the tuning was measured and tested on."""
    version = version or (sys.version_info.major, sys.version_info.minor)
    implementation = implementation or platform.python_implementation()
    return implementation == "CPython" and version in TUNED_PYTHON_MINORS and len(gc.get_threshold()) == 3


class GcTuning:
    """Installed by the lifespan; `stop` restores the interpreter's own settings."""

    def __init__(self, closed_sockets: Callable[[], int], *, tuned: bool | None = None) -> None:
        self.tuned = tuning_applies() if tuned is None else tuned
        self._closed_sockets = closed_sockets
        self._old_thresholds = gc.get_threshold()
        self._started_s = 0.0
        self._reclaimed_at_s = 0.0
        self._closed_at_reclaim = 0
        self._new_sockets = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.tuned:
            gc.collect()
            gc.freeze()  # the one-freeze idiom: start-up objects out of the collector's sight, nothing more
            logger.info(
                "gc tuning off on %s %s: start-up objects frozen once",
                platform.python_implementation(),
                platform.python_version(),
            )
            return
        self._reclaim()  # what startup built lives as long as the process
        gc.set_threshold(*GC_THRESHOLDS)
        gc.callbacks.append(self._after_collection)
        self._task = asyncio.get_running_loop().create_task(self._reclaim_when_due())

    def socket_opened(self) -> None:
        if not self.tuned:
            return
        self._new_sockets += 1
        if self._new_sockets >= COLLECT_EVERY_NEW_SOCKETS:
            self._new_sockets = 0
            gc.collect(0)  # the callback then freezes the new sockets' objects

    async def _reclaim_when_due(self) -> None:
        while True:
            await asyncio.sleep(RECLAIM_CHECK_INTERVAL_S)
            since_s = time.monotonic() - self._reclaimed_at_s
            churned = self._closed_sockets() - self._closed_at_reclaim >= RECLAIM_AFTER_CLOSED_SOCKETS
            if (churned and since_s >= RECLAIM_MIN_INTERVAL_S) or since_s >= RECLAIM_MAX_INTERVAL_S:
                self._reclaim()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.set_threshold(*self._old_thresholds)

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_s = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._started_s) * 1000
        gc.freeze()  # the collected generations are empty now: only survivors get frozen
        if pause_ms >= GC_PAUSE_LOG_MS:
            logger.info("gc pause generation=%d pause_ms=%.1f", info["generation"], pause_ms)

    def _reclaim(self) -> None:
        """One full look at everything: unfreeze, collect, freeze what lives (the callback freezes)."""
        started_s = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self._reclaimed_at_s = time.monotonic()
        self._closed_at_reclaim = self._closed_sockets()
        logger.info("gc reclaim collected=%d pause_ms=%.1f", collected, (time.perf_counter() - started_s) * 1000)
