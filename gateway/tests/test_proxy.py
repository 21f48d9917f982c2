"""The ``/v1`` HTTP proxy: paths, queries, statuses, headers and streamed bodies, both ways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
UPLOAD_BYTES = 50 * MIB
UPLOAD_CHUNK_BYTES = 256 * 1024
# the gateway may buffer a few chunks per direction, never the body: 50 MB would show as 50 MB
PEAK_RSS_GROWTH_LIMIT_BYTES = 20 * MIB


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(kwargs.pop("method", "GET"), url, **kwargs)


class TestRoutes:
    async def test_measurement_path_and_query_pass_unchanged(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/measurement/signal?sample_rate=48000&tag=a%20b&tag=c")
        body = response.json()
        assert response.status_code == 200
        assert (body["service"], body["method"]) == ("measurement", "GET")
        assert body["path"] == "/v1/measurement/signal"
        assert body["query"] == "sample_rate=48000&tag=a%20b&tag=c"

    async def test_jobs_go_to_measurement_with_body_and_status(self, gateway: Any) -> None:
        response = await get(
            gateway.url + "/v1/jobs/j-1/recordings/up%201.wav?status=201",
            method="PUT",
            json={"speaker_slot_id": "speaker_1"},
            headers={"X-Custom": "kept", "X-Device-Id": "phone-1", "X-Request-Id": "proxy-req-1"},
        )
        body = response.json()
        assert response.status_code == 201
        assert body["service"] == "measurement"
        assert body["path"] == "/v1/jobs/j-1/recordings/up%201.wav"
        assert body["n_bytes"] == len(b'{"speaker_slot_id":"speaker_1"}')
        assert body["headers"]["content-type"] == "application/json"
        assert body["headers"]["x-custom"] == "kept"
        assert body["headers"]["x-device-id"] == "phone-1"
        assert body["headers"]["x-request-id"] == "proxy-req-1"
        assert response.headers["x-stub-service"] == "measurement"
        assert "stub=1" in response.headers["set-cookie"]
        assert response.headers["x-request-id"] == "proxy-req-1"

    async def test_simulation_prefix_is_removed(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/simulation/simulate?method=ism", method="POST", json={"room": {}})
        body = response.json()
        assert (body["service"], body["path"], body["query"]) == ("simulation", "/simulate", "method=ism")
        assert body["headers"]["x-forwarded-prefix"] == "/v1/simulation"

    async def test_unstripped_paths_carry_no_forwarded_prefix(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/jobs/j-2")
        assert "x-forwarded-prefix" not in response.json()["headers"]

    async def test_error_status_and_body_pass_through(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/jobs/missing?status=404")
        assert response.status_code == 404
        assert response.json()["path"] == "/v1/jobs/missing"

    async def test_internal_token_from_a_client_is_not_forwarded(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/jobs/x", headers={"X-Internal-Token": "guess"})
        assert "x-internal-token" not in response.json()["headers"]

    async def test_other_v1_paths_are_404_json(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/lobbies")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_backend_down_is_503_json(self, down_gateway: Any) -> None:
        for path in ("/v1/measurement/audio", "/v1/jobs/j", "/v1/simulation/materials"):
            response = await get(down_gateway.url + path)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "service_unavailable"

    async def test_backend_slower_than_the_timeout_is_504_json(self, gateway: Any) -> None:
        response = await get(gateway.url + "/v1/simulation/materials?sleep_s=3")
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"


class TestStreaming:
    async def test_50_mb_upload_streams_through_without_being_held(self, gateway: Any) -> None:
        last_chunk_sent_at_s: list[float] = []

        async def body() -> AsyncIterator[bytes]:
            block = b"u" * UPLOAD_CHUNK_BYTES
            for _ in range(UPLOAD_BYTES // UPLOAD_CHUNK_BYTES):
                yield block
            last_chunk_sent_at_s.append(time.time())

        gateway.reset_peak_rss()
        peak_before = gateway.peak_rss_bytes()
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(
                gateway.url + "/v1/jobs/j-big/uploads/rec.wav",
                content=body(),
                headers={"Content-Type": "audio/wav", "Content-Length": str(UPLOAD_BYTES)},
            )
        result = response.json()
        assert response.status_code == 200
        assert result["n_bytes"] == UPLOAD_BYTES
        assert result["n_chunks"] > 10  # arrived in pieces, not as one 50 MB block
        assert result["first_chunk_at_s"] < last_chunk_sent_at_s[0]  # forwarding began before the upload ended
        assert result["headers"]["content-length"] == str(UPLOAD_BYTES)
        assert gateway.peak_rss_bytes() - peak_before < PEAK_RSS_GROWTH_LIMIT_BYTES

    async def test_chunked_upload_without_length_is_forwarded(self, gateway: Any) -> None:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"c" * 1000

        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(gateway.url + "/v1/simulation/echo", content=body())
        assert response.json()["n_bytes"] == 8000

    async def test_50_mb_download_streams_through_without_being_held(self, gateway: Any) -> None:
        gateway.reset_peak_rss()
        peak_before = gateway.peak_rss_bytes()
        n_bytes = 0
        async with httpx.AsyncClient(timeout=60) as client:
            url = gateway.url + f"/v1/measurement/audio?download_bytes={UPLOAD_BYTES}"
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/octet-stream"
                async for chunk in response.aiter_raw():
                    n_bytes += len(chunk)
        assert n_bytes == UPLOAD_BYTES
        assert gateway.peak_rss_bytes() - peak_before < PEAK_RSS_GROWTH_LIMIT_BYTES


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP/1.1 request (head and Content-Length body); False when the peer closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return True


async def flaky_backend(first_status: int) -> tuple[asyncio.Server, str]:
    """A service that answers a connection's first request with ``first_status`` (keep-alive) and then,
    like a process that failed on an unhandled error, drops that connection when the next request arrives."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await _read_request(reader):
                body = b'{"error":{"code":"internal_error","message":"internal error"}}'
                writer.write(b"HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (first_status, len(body), body))  # fmt: skip
                await writer.drain()
                await _read_request(reader)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def backend_at(url: str) -> dict[str, str]:
    return {"MEASUREMENT_URL": url, "LOBBY_URL": url, "SIMULATION_URL": url, "HTTP_TIMEOUT_SECONDS": "5"}


class TestUpstreamFailures:
    """One client's failed request never turns into another client's failure (issue 14, defect 2)."""

    async def test_a_connection_that_carried_a_5xx_is_not_reused(self, tmp_path: Any, kit: Any) -> None:
        server, url = await flaky_backend(500)
        running = await asyncio.to_thread(kit.start_gateway, tmp_path, backend_at(url))
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for round_ in range(4):
                    # every request lands on a fresh upstream connection, so each one gets the service's
                    # own answer (500 here), never 503 from a connection the previous request left dead
                    got = await client.get(running.url + f"/v1/jobs/get-{round_}")
                    posted = await client.post(running.url + f"/v1/jobs/up-{round_}", content=b"x" * 1000)
                    for response in (got, posted):
                        assert response.status_code == 500, (round_, response.request.method, response.text)
                        assert response.json()["error"]["code"] == "internal_error"
        finally:
            await asyncio.to_thread(running.suite.stop)
            server.close()

    async def test_a_bodyless_idempotent_request_on_a_dead_connection_is_sent_once_more(
        self, tmp_path: Any, kit: Any
    ) -> None:
        server, url = await flaky_backend(200)
        running = await asyncio.to_thread(kit.start_gateway, tmp_path, backend_at(url))
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for round_ in range(4):
                    response = await client.get(running.url + f"/v1/jobs/get-{round_}")
                    assert response.status_code == 200, response.text
        finally:
            await asyncio.to_thread(running.suite.stop)
            server.close()
