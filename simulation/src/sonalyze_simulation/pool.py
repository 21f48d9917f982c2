"""`SimulationPool`: simulations in worker processes, at most ``size`` at once, the rest waiting a bounded time.

The event loop never runs a simulation, so ``/health`` and other requests answer while workers are busy.
A request holds a slot from submission until its worker finishes, even when its client has gone, so
the number of busy workers never exceeds the pool size and the queue bound stays truthful.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from sonalyze_protocol.errors import InternalError, ServiceUnavailable

from sonalyze_simulation import worker

logger = logging.getLogger("sonalyze.simulation.pool")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolResult:
    value: Any
    queue_s: float


class SimulationPool:
    def __init__(self, size: int, queue_wait_s: float, max_queued: int) -> None:
        self.size = size
        self.queue_wait_s = queue_wait_s
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(size)
        self._waiting = 0
        self._running = 0
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: a forked copy of a process running an event loop and threads is not safe
        return ProcessPoolExecutor(max_workers=self.size, mp_context=multiprocessing.get_context("spawn"))

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def warm_up(self) -> None:
        """Start every worker and import the engine in it; does not wait."""
        for _ in range(self.size):
            self._executor.submit(worker.warm_up)

    async def run(self, func: Callable[[Any], T], arg: Any) -> PoolResult:
        """``func(arg)`` in a worker; `ServiceUnavailable` when no worker frees up within the queue wait."""
        started = time.perf_counter()
        if self._waiting >= self.max_queued and self._slots.locked():
            raise ServiceUnavailable(
                f"all {self.size} simulation workers are busy and {self._waiting} requests are waiting; retry later",
                retry_after_ms=int(self.queue_wait_s * 1000) or 1000,
            )
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.queue_wait_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"all {self.size} simulation workers stayed busy for {self.queue_wait_s:g} s; retry later",
                retry_after_ms=int(self.queue_wait_s * 1000) or 1000,
            ) from None
        finally:
            self._waiting -= 1
        queue_s = time.perf_counter() - started

        executor = self._executor
        try:
            future: Future[T] = executor.submit(func, arg)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._slots.release()
            self._replace_broken_executor(executor)
            raise ServiceUnavailable(f"simulation workers were restarting ({exc}); retry") from None
        self._running += 1

        def release(_: Future[T]) -> None:
            self._running -= 1
            self._slots.release()

        # the slot is given back when the worker is done, not when the caller stops waiting
        wrapped = asyncio.wrap_future(future)
        wrapped.add_done_callback(release)
        try:
            value = await asyncio.shield(wrapped)
        except BrokenProcessPool:
            self._replace_broken_executor(executor)
            raise InternalError("the simulation worker died (out of memory?); the pool was restarted") from None
        return PoolResult(value=value, queue_s=queue_s)

    def _replace_broken_executor(self, broken: ProcessPoolExecutor) -> None:
        # every request running on the broken pool fails at once; only the first replaces it
        if self._executor is not broken:
            return
        logger.error("simulation worker pool broken; starting a new one")
        self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop at once: queued work is cancelled and running workers are terminated."""
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
