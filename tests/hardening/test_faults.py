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
            assert upload.status_code in (200, 201), upload.text
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


BAD_JOB_BODIES = {
    "nan": b'{"map": {"x": NaN}, "meta": {}}',
    "infinity": b'{"map": {"x": Infinity}, "meta": {}}',
    "1e999": b'{"map": {"x": 1e999}, "meta": {}}',
    "nesting 900": b'{"map": {"x": ' + b"[" * 900 + b"]" * 900 + b"}, " + b'"meta": {}}',
    "lone surrogate": b'{"map": {"x": "\\ud800"}, "meta": {}}',
}


def job_dirs(suite: Suite) -> set[str]:
    jobs = suite.config.data_dir / "jobs"
    return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()


class TestBadJsonBodies:
    @pytest.mark.parametrize("body", BAD_JOB_BODIES.values(), ids=BAD_JOB_BODIES.keys())
    async def test_a_bad_job_body_gets_422_and_is_never_stored(self, hard_suite: Suite, body: bytes) -> None:
        before = job_dirs(hard_suite)
        async with httpx.AsyncClient(base_url=hard_suite.config.url("gateway"), timeout=30) as http:
            response = await http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "bad_request"
        assert job_dirs(hard_suite) == before

    async def test_a_job_body_over_1_mib_gets_413(self, hard_suite: Suite) -> None:
        before = job_dirs(hard_suite)
        body = b'{"map": {"blob": "' + b"a" * (2 * 1024 * 1024) + b'"}, "meta": {}}'
        async with httpx.AsyncClient(base_url=hard_suite.config.url("gateway"), timeout=30) as http:
            response = await http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "message_too_large"
        assert job_dirs(hard_suite) == before

    @pytest.mark.parametrize("path", ["/v1/measurement/audio", "/v1/measurement/signal"])
    async def test_a_500_digit_sample_rate_is_a_bad_request(self, hard_suite: Suite, path: str) -> None:
        async with httpx.AsyncClient(base_url=hard_suite.config.url("gateway"), timeout=30) as http:
            response = await http.get(path, params={"sample_rate": "9" * 500})
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] == "bad_request"


class TestClientFacingMessages:
    async def test_an_unreadable_upload_is_refused_without_the_server_path(self, hard_suite: Suite) -> None:
        async with httpx.AsyncClient(base_url=hard_suite.config.url("gateway"), timeout=30) as http:
            job_id = (await http.post("/v1/jobs", json={"map": {}, "meta": {}})).json()["job_id"]
            response = await http.post(f"/v1/jobs/{job_id}/uploads/x.wav", content=b"RIFF" + b"\x01" * 5000,
                                       headers={"Content-Type": "audio/wav"})  # fmt: skip
        assert response.status_code == 400, response.text
        message = response.json()["error"]["message"]
        assert str(hard_suite.config.data_dir.parent) not in message
        assert "/tmp" not in message and ".part" not in message, message


async def ws_exchange(suite: Suite, frames: list[str], n_replies: int) -> list[dict[str, Any]]:
    """Send ``frames`` on one socket and return the next ``n_replies`` replies (pushes skipped)."""
    import orjson
    import websockets

    url = suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    async with websockets.connect(url, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        replies: list[dict[str, Any]] = []
        while len(replies) < n_replies:
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply["type"] != "event":  # the gateway's identify_required / identified notices
                replies.append(reply)
        return replies


class TestWebSocketFaults:
    async def test_deeply_nested_data_is_a_bad_request_not_an_internal_error(self, hard_suite: Suite) -> None:
        identify = '{"event": "identify", "request_id": "i", "data": {"device_id": "deep-1"}}'
        deep = [
            '{"event": "lobby.create", "request_id": "d%d", "data": {"x": %s%s}}' % (n, "[" * n, "]" * n)  # noqa: UP031 (JSON braces)
            for n in (40, 254, 255, 600, 1023)
        ]
        replies = await ws_exchange(hard_suite, [identify, *deep], 1 + len(deep))
        assert replies[0]["type"] == "response"
        for reply in replies[1:]:
            assert reply["type"] == "error", reply
            assert reply["error"]["code"] == "bad_request", reply

    async def test_an_unknown_event_name_is_echoed_only_as_a_short_prefix(self, hard_suite: Suite) -> None:
        identify = '{"event": "identify", "request_id": "i", "data": {"device_id": "echo-1"}}'
        long_name = "x" * 60_000
        replies = await ws_exchange(hard_suite, [identify, f'{{"event": "{long_name}", "request_id": 1}}'], 2)
        error = replies[1]
        assert error["type"] == "error" and error["error"]["code"] == "bad_request"
        assert len(str(error)) < 400, str(error)[:400]


class TestDeadLetters:
    async def test_a_record_storage_refuses_shows_as_dead_in_health(self, hard_suite: Suite) -> None:
        measurement = hard_suite.config.url("measurement")
        async with httpx.AsyncClient(timeout=30) as http:
            before = (await http.get(measurement + "/health")).json()["outbox"]["dead"]
            # storage refuses a lobby id longer than its column: the upload's record is a dead letter
            created = await http.post(measurement + "/v1/jobs", json={"map": {}, "meta": {"lobby_id": "L" * 300}})
            job_id = created.json()["job_id"]
            upload = await http.post(f"{measurement}/v1/jobs/{job_id}/uploads/a.wav", content=noise_wav(1.0),
                                     headers={"Content-Type": "audio/wav"})  # fmt: skip
            assert upload.status_code in (200, 201), upload.text

            async def dead() -> int:
                count = (await http.get(measurement + "/health")).json()["outbox"]["dead"]
                return count if count > before else 0

            assert await wait_for(dead) == before + 1
            for service in ("gateway", "lobby", "simulation"):
                path = "/healthz" if service == "gateway" else "/health"
                health = (await http.get(hard_suite.config.url(service) + path)).json()
                assert set(health["outbox"]) == {"pending", "dead"}, (service, health)
