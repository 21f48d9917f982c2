"""The process pool that runs analyses off the event loop, so /health and uploads stay responsive.

Workers are spawned (not forked: the parent runs an event loop and threads) and warmed up at start,
so the first analysis does not pay for importing numpy and scipy. A crashed worker breaks the pool;
the recordings it held fail with that reason and the pool is rebuilt for the next call. A worker stops an
analysis that runs past the timeout itself (`deadline`), so it does not go on computing for no one.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sonalyze_measurement.analysis.metrics import AnalysisTask, analyze_recording, json_safe, stopped_result
from sonalyze_protocol.deadline import DeadlineExceeded, deadline

logger = logging.getLogger("sonalyze.measurement.pool")


# the pool's own wait outlasts the worker's deadline a little, so the worker normally answers itself
DEADLINE_GRACE_S = 5.0


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
    def __init__(self, max_workers: int, timeout_s: float) -> None:
        self.max_workers = max_workers
        self.timeout_s = timeout_s
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._executor = ProcessPoolExecutor(self.max_workers, mp_context=multiprocessing.get_context("spawn"))
        for _ in range(self.max_workers):
            self._executor.submit(_warm_up)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def run(self, tasks: list[AnalysisTask]) -> list[dict[str, Any]]:
        """Analyse every task in parallel; each result is a result item, failures included."""
        return list(await asyncio.gather(*(self._run_one(task) for task in tasks)))

    async def _run_one(self, task: AnalysisTask) -> dict[str, Any]:
        if self._executor is None:
            self.start()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            future = loop.run_in_executor(executor, _analyze_within, task, self.timeout_s)
            return await asyncio.wait_for(future, self.timeout_s + DEADLINE_GRACE_S)
        except TimeoutError:
            reason = f"analysis took longer than {self.timeout_s:g} s"
        except BrokenProcessPool:
            logger.error("analysis worker died on %s/%s; rebuilding the pool", task.job_id, task.upload_name)
            if self._executor is executor:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            reason = "the analysis worker crashed on this recording"
        return json_safe(
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
