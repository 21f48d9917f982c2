"""The worker processes that run analyses off the event loop, so /health and uploads stay responsive.

Workers are spawned (not forked: the parent runs an event loop and threads) and warmed up at start,
so the first analysis does not pay for importing numpy and scipy. Each worker is a one-process executor
of its own, so one can be ended without touching the others' analyses:

- at the timeout the worker stops the analysis itself (`deadline`: a timer signal, as its numpy work
  returns to Python often) and answers a failed result; if it is still busy `DEADLINE_GRACE_S` later
  (stuck in one long C call) its process is killed and replaced;
- a caller that is cancelled (its client left, `stop_when_client_leaves`) has its worker killed and
  replaced at once, so nothing computes for no one;
- a worker that crashes fails its recording with that reason and is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sonalyze_measurement.analysis.metrics import AnalysisTask, analyze_recording, stopped_result
from sonalyze_protocol.deadline import DeadlineExceeded, deadline
from sonalyze_protocol.json_rule import jsonable

logger = logging.getLogger("sonalyze.measurement.pool")


T = TypeVar("T")

# the pool's own wait outlasts the worker's deadline a little, so the worker normally answers itself
DEADLINE_GRACE_S = 1.0


class WorkerStopped(Exception):
    """The worker ran past the timeout and its grace and was killed (and replaced)."""


def _analyze_within(task: AnalysisTask, deadline_s: float) -> dict[str, Any]:
    """`analyze_recording`, stopped when it runs past ``deadline_s`` so the worker is free for the next."""
    try:
        with deadline(deadline_s):
            return analyze_recording(task)
    except DeadlineExceeded as exc:
        # the alarm may ring after the analysis proper, while its result is assembled: still a failed result
        return stopped_result(task, exc)


def _warm_up() -> bool:
    import sonalyze_acoustics.parameters  # noqa: F401
    import sonalyze_measurement.analysis.metrics  # noqa: F401

    return True


class AnalysisPool:
    """``max_workers`` one-process executors; `run` analyses recordings on them, at most one each at a time."""

    def __init__(self, max_workers: int, timeout_s: float) -> None:
        self.max_workers = max_workers
        self.timeout_s = timeout_s
        self._idle: list[ProcessPoolExecutor] = []
        self._busy: set[ProcessPoolExecutor] = set()
        self._warming: dict[ProcessPoolExecutor, Future[bool]] = {}
        self._slots = asyncio.Semaphore(max_workers)
        self._started = False

    def start(self) -> None:
        self._idle = [self._new_executor() for _ in range(self.max_workers)]
        self._started = True

    def shutdown(self) -> None:
        """Stop at once: running analyses are ended with their processes."""
        for executor in [*self._idle, *self._busy]:
            _kill(executor)
        self._idle, self._busy, self._warming, self._started = [], set(), {}, False

    def busy_worker_pids(self) -> list[int]:
        """Process ids of the workers analysing now."""
        return [pid for executor in self._busy for pid in (getattr(executor, "_processes", None) or {})]

    async def run(self, tasks: list[AnalysisTask]) -> list[dict[str, Any]]:
        """Analyse every task in parallel; each result is a result item, failures included."""
        return list(await asyncio.gather(*(self._run_one(task) for task in tasks)))

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a free worker, which is killed and replaced when it is still busy
        `DEADLINE_GRACE_S` after the timeout (`WorkerStopped`) or when the caller is cancelled."""
        if not self._started:
            self.start()
        async with self._slots:
            executor = self._idle.pop()
            self._busy.add(executor)
            try:
                if (warming := self._warming.pop(executor, None)) is not None:
                    await asyncio.wrap_future(warming)  # the timeout counts from the start of the work
                try:
                    future: Future[T] = executor.submit(func, *args)
                except RuntimeError:  # shut down after its process died
                    raise BrokenProcessPool("the analysis worker had died") from None
                try:
                    return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s + DEADLINE_GRACE_S)
                except TimeoutError:
                    executor = self._replace(executor)  # stuck where its own alarm cannot reach
                    raise WorkerStopped(f"analysis took longer than {self.timeout_s:g} s") from None
            except (asyncio.CancelledError, BrokenProcessPool):
                executor = self._replace(executor)  # nobody waits for the answer, or the worker died
                raise
            finally:
                self._busy.discard(executor)
                self._idle.append(executor)

    async def _run_one(self, task: AnalysisTask) -> dict[str, Any]:
        try:
            return await self.call(_analyze_within, task, self.timeout_s)
        except WorkerStopped as exc:
            reason = str(exc)
        except BrokenProcessPool:
            logger.error("analysis worker died on %s/%s; it was replaced", task.job_id, task.upload_name)
            reason = "the analysis worker crashed on this recording"
        return jsonable(
            {
                "upload_name": task.upload_name,
                "speaker_slot_id": task.speaker_slot_id,
                "mic_slot_id": task.mic_slot_id,
                "status": "failed",
                "error": {"code": "analysis_failed", "message": reason},
                "quality": {"signal_id": task.signal_id},
                "broadband": None,
                "bands": None,
                "plots": None,
            }
        )

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._warming[executor] = executor.submit(_warm_up)
        return executor

    def _replace(self, executor: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """End ``executor``'s process now; a fresh, warming worker in its place."""
        self._busy.discard(executor)
        self._warming.pop(executor, None)
        _kill(executor)
        logger.warning("an analysis worker was stopped and replaced")
        return self._new_executor()


def _kill(executor: ProcessPoolExecutor) -> None:
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
