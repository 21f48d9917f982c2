"""`SeenDevices`: the gateway's "device seen" records, coalesced and written to storage in batches.

Every connect and disconnect widens a device's first/last-seen window in storage. Written one by one,
1000 phones connecting at once cost 1000 local outbox commits (each an fsync) and 1000 upserts in
storage, all competing with the phones' own events for the CPU. Here a notice only updates a dict;
every `FLUSH_INTERVAL_S` the windows gathered so far go out as bulk writes of up to `BATCH_DEVICES`
(``POST /v1/devices/bulk``), so a storm costs a handful of writes. Shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from datetime import UTC, datetime
from typing import Final

from sonalyze_protocol.storage_client import StorageRecorder

logger = logging.getLogger("sonalyze.gateway.seen")

FLUSH_INTERVAL_S: Final = 2.0
BATCH_DEVICES: Final = 500


class SeenDevices:
    """Collects seen windows per device; a background task hands them to the recorder in batches."""

    def __init__(self, recorder: StorageRecorder, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._recorder = recorder
        self._interval_s = interval_s
        self._windows: dict[str, tuple[datetime, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def seen(self, device_id: str, at: datetime | None = None) -> None:
        """Widen ``device_id``'s window to include ``at`` (default now); costs a dict update."""
        at = at or datetime.now(UTC)
        window = self._windows.get(device_id)
        self._windows[device_id] = (at, at) if window is None else (min(window[0], at), max(window[1], at))

    @property
    def pending(self) -> int:
        return len(self._windows)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seen-devices")

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
            await self.flush()  # after the stop too: nothing gathered is left behind

    async def flush(self) -> None:
        """Queue everything gathered so far as bulk writes (the recorder's outbox delivers them)."""
        windows, self._windows = self._windows, {}
        items = iter(windows.items())
        while batch := dict(itertools.islice(items, BATCH_DEVICES)):
            await self._recorder.devices_seen(batch)  # queued locally; never raises

    async def aclose(self) -> None:
        """Stop after one last flush."""
        self._stop.set()
        if self._task is not None:
            await self._task
        else:
            await self.flush()
