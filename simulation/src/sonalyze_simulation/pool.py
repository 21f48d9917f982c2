"""`SimulationPool`: simulations in worker processes, at most ``size`` at once, the rest waiting a bounded time.

The event loop never runs a simulation, so ``/health`` and other requests answer while workers are busy.
A request holds a slot until its worker finishes; a simulation still running at ``deadline_s`` (by then
the gateway has answered its client) or whose caller was cancelled has its worker process ended and
replaced, so no worker computes for no one. Each worker is its own one-process executor for that.
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

from sonalyze_protocol.deadline import DeadlineExceeded
from sonalyze_protocol.errors import InternalError, ServiceUnavailable
from sonalyze_simulation import worker

logger = logging.getLogger("sonalyze.simulation.pool")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolResult:
    value: Any
    queue_s: float


class SimulationPool:
    """``size`` workers, each a one-process executor of its own, so one worker can be stopped (killed and
    replaced) without touching the simulations the others run."""

    def __init__(self, size: int, queue_wait_s: float, max_queued: int, deadline_s: float | None = None) -> None:
        self.size = size
        self.queue_wait_s = queue_wait_s
        self.max_queued = max_queued
        self.deadline_s = deadline_s
        self._slots = asyncio.Semaphore(size)
        self._waiting = 0
        self._running = 0
        self._idle: list[ProcessPoolExecutor] = [self._new_executor() for _ in range(size)]
        self._busy: set[ProcessPoolExecutor] = set()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: a forked copy of a process running an event loop and threads is not safe
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers running a simulation now."""
        return [pid for executor in self._busy for pid in (getattr(executor, "_processes", None) or {})]

    def warm_up(self) -> None:
        """Start every worker and import the engine in it; does not wait."""
        for executor in self._idle:
            executor.submit(worker.warm_up)

    async def run(self, func: Callable[[Any], T], arg: Any) -> PoolResult:
        """``func(arg)`` in a worker; `ServiceUnavailable` when no worker frees up within the queue wait,
        `DeadlineExceeded` (and the worker replaced) when it runs past ``deadline_s`` or the caller is cancelled."""
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

        executor = self._idle.pop()
        self._busy.add(executor)
        self._running += 1
        try:
            try:
                future: Future[T] = executor.submit(func, arg)
            except (BrokenProcessPool, RuntimeError) as exc:
                executor = self._replace(executor)
                raise ServiceUnavailable(f"simulation workers were restarting ({exc}); retry") from None
            try:
                value = await asyncio.wait_for(asyncio.wrap_future(future), self.deadline_s)
            except TimeoutError:
                executor = self._replace(executor)  # its simulation runs in C: only ending the process stops it
                raise DeadlineExceeded(f"stopped after {self.deadline_s:g} s") from None
            except asyncio.CancelledError:
                executor = self._replace(executor)  # nobody waits for the answer any more
                raise
            except BrokenProcessPool:
                executor = self._replace(executor)
                raise InternalError("the simulation worker died (out of memory?); it was restarted") from None
        finally:
            self._running -= 1
            self._busy.discard(executor)
            self._idle.append(executor)
            self._slots.release()
        return PoolResult(value=value, queue_s=queue_s)

    def _replace(self, executor: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """End ``executor``'s process now and return a fresh, warming worker in its place."""
        self._busy.discard(executor)
        _kill(executor)
        fresh = self._new_executor()
        fresh.submit(worker.warm_up)
        logger.warning("a simulation worker was stopped and replaced")
        return fresh

    def shutdown(self) -> None:
        """Stop at once: queued work is cancelled and running workers are terminated."""
        for executor in [*self._idle, *self._busy]:
            _kill(executor)


def _kill(executor: ProcessPoolExecutor) -> None:
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
