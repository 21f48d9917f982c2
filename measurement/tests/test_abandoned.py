"""Issue 14: an analysis nobody waits for any more stops its worker process.

Past the timeout, a worker that cannot stop itself (stuck in one long C call, where its timer signal
cannot reach) is killed and replaced; a client that disconnects from ``POST /v1/jobs/{id}/analyze`` has
its workers killed at once. The app is served by uvicorn on a real port (an in-process ASGI transport
never reports a disconnect) and the leaving client is a raw socket, so "disconnect" is a TCP close.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from reference_cases import ReferenceCase

from sonalyze_measurement.analysis_pool import DEADLINE_GRACE_S, AnalysisPool, WorkerStopped
from sonalyze_measurement.main import create_app
from sonalyze_measurement.settings import Settings
from sonalyze_suite.testing import process_gone, served_app


async def wait_gone(pid: int, since_s: float, limit_s: float) -> float:
    while not process_gone(pid):
        assert time.perf_counter() - since_s < limit_s, f"worker {pid} still runs {limit_s:g} s later"
        await asyncio.sleep(0.02)
    return time.perf_counter() - since_s


async def busy_pid(pool: AnalysisPool, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not pool.busy_worker_pids():
        assert time.monotonic() < deadline, "no worker ever got busy"
        await asyncio.sleep(0.01)
    [pid] = pool.busy_worker_pids()
    return pid


class TestDeadline:
    async def test_a_worker_stuck_in_c_past_the_timeout_is_killed_and_replaced(self) -> None:
        """PBKDF2 with 10^9 rounds is minutes in one C call: no signal handler runs meanwhile."""
        pool = AnalysisPool(max_workers=1, timeout_s=0.5)
        pool.start()
        try:
            assert await pool.call(math.sqrt, 16.0) == 4.0  # the worker is up and warm
            stuck = asyncio.create_task(pool.call(hashlib.pbkdf2_hmac, "sha256", b"key", b"salt", 10**9))
            pid = await busy_pid(pool)
            started = time.perf_counter()
            with pytest.raises(WorkerStopped, match=r"longer than 0\.5 s"):
                await stuck
            assert time.perf_counter() - started < 0.5 + DEADLINE_GRACE_S + 1.0
            await wait_gone(pid, started, 0.5 + DEADLINE_GRACE_S + 2.0)
            assert pool.busy_worker_pids() == []
            # the replacement takes the next job
            assert await asyncio.wait_for(pool.call(math.sqrt, 9.0), 30.0) == 3.0
        finally:
            pool.shutdown()


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app under uvicorn on a free local port, lifespan and worker pool included."""
    app = create_app(settings)
    async with served_app(app) as base_url:
        yield app, base_url


def analyze_request(job_id: str, via: str, token: str) -> bytes:
    """``POST /v1/jobs/{id}/analyze``, or the gateway's ``analysis.run`` of the whole job."""
    if via == "http":
        return f"POST /v1/jobs/{job_id}/analyze HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n".encode()
    body = json.dumps({"event": "analysis.run", "request_id": 1, "device_id": "phone", "data": {"job_id": job_id}})
    return (
        f"POST /gateway/handle HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nX-Internal-Token: {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class TestClientGone:
    @pytest.mark.parametrize("via", ["http", "analysis.run"])
    async def test_a_client_that_disconnects_stops_the_analysis(
        self, tmp_path_factory: pytest.TempPathFactory, tools: SimpleNamespace, via: str
    ) -> None:
        settings = tools.make_settings(tmp_path_factory.mktemp("gone"))
        async with served(settings) as (app, base_url):
            pool: AnalysisPool = app.state.services.pool
            async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
                signal = await client.get("/v1/measurement/audio", params={"sample_rate": 48000})
                recording, _ = tools.recording_of(
                    tools.signal_samples(signal.content), ReferenceCase("good", pnr_db=50.0, drift_ppm=120.0)
                )
                good_recording = tools.wav_bytes(recording, 44100)
                job_id = await tools.new_job(client)
                for take in range(4):  # one worker: they run one after the other, seconds in all
                    upload = await client.post(f"/v1/jobs/{job_id}/uploads/take{take}.wav", content=good_recording)
                    assert upload.status_code in (200, 201), upload.text
                host, port = base_url.removeprefix("http://").split(":")
                _, writer = await asyncio.open_connection(host, int(port))
                writer.write(analyze_request(job_id, via, tools.TOKEN))
                pid = await busy_pid(pool)
                left = time.perf_counter()
                writer.close()
                stopped_s = await wait_gone(pid, left, 10.0)
                assert stopped_s < 2.0, stopped_s
                await asyncio.sleep(0.5)
                assert pool.busy_worker_pids() == [], "the takes still waiting went on to a worker"
                job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
                assert job["analysis"]["state"] == "failed" and "caller left" in job["analysis"]["error"], job
                # the replacement worker analyses the next request
                again = await client.post(f"/v1/jobs/{job_id}/analyze")
                assert again.status_code == 200, again.text
                assert [r["status"] for r in again.json()["results"]] == ["ok"] * 4, again.json()["results"][0]
