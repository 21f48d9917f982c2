"""The faults of issue 14 as end-to-end cases against the real suite (each fails without its fix)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e


def noise_wav(seconds: float = 3.0, rate_hz: int = 48000) -> bytes:
    """A recording in which no sweep can be found: its analysis fails."""
    samples = np.random.default_rng(1).normal(0, 0.1, int(seconds * rate_hz))
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


async def wait_for(probe: Any, timeout_s: float = 30.0) -> Any:
    """Poll ``await probe()`` until it returns something truthy (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.3)


class TestFailedResultsAreStored:
    async def test_a_failed_analysis_reaches_storage_with_its_error_as_text(self, hard_suite: Suite) -> None:
        gateway = hard_suite.config.url("gateway")
        async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
            job_id = (await http.post("/v1/jobs", json={"map": {}, "meta": {}})).json()["job_id"]
            upload = await http.post(f"/v1/jobs/{job_id}/uploads/noise.wav", content=noise_wav(),
                                     headers={"Content-Type": "audio/wav"})  # fmt: skip
            assert upload.status_code == 201, upload.text
            analysed = await http.post(f"/v1/jobs/{job_id}/analyze")
            assert analysed.status_code == 200, analysed.text
            assert [r["status"] for r in analysed.json()["results"]] == ["failed"]

        async with httpx.AsyncClient(base_url=hard_suite.config.url("storage"), timeout=10) as storage:

            async def outputs() -> list[dict[str, Any]]:
                return (await storage.get("/v1/analysis-outputs", params={"job_id": job_id})).json()["items"]

            stored = await wait_for(outputs)
        assert len(stored) == 1, stored
        assert stored[0]["status"] == "failed"
        assert isinstance(stored[0]["error"], str) and stored[0]["error"].startswith("sync_not_found: ")
