"""The service as a real process: responsive while analysing, no partial file after a dropped upload."""

from __future__ import annotations

import io
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
import soundfile as sf
from reference_cases import ReferenceCase, design_room, simulate_recording

pytestmark = pytest.mark.e2e


def _recording_wav(client: httpx.Client) -> bytes:
    audio = client.get("/v1/measurement/audio", params={"sample_rate": 48000})
    signal, _ = sf.read(io.BytesIO(audio.content), dtype="float64")
    case = ReferenceCase("live", t60_1k_s=1.5, pnr_db=50.0, recording_rate_hz=48000)
    buffer = io.BytesIO()
    sf.write(buffer, simulate_recording(signal, 48000, design_room(case), case), 48000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def test_health_and_uploads_stay_responsive_during_an_analysis(live_service) -> None:
    with httpx.Client(base_url=live_service.url, timeout=60) as client:
        body = _recording_wav(client)
        job_id = client.post("/v1/jobs", json={}).json()["job_id"]
        for index in range(6):
            assert client.post(f"/v1/jobs/{job_id}/uploads/r{index}.wav", content=body).status_code == 200
        outcome: dict = {}

        def analyze() -> None:
            started = time.perf_counter()
            with httpx.Client(base_url=live_service.url, timeout=120) as other:
                outcome["response"] = other.post(f"/v1/jobs/{job_id}/analyze")
            outcome["duration_s"] = time.perf_counter() - started

        worker = threading.Thread(target=analyze)
        worker.start()
        time.sleep(0.2)
        health_s = []
        upload_s = None
        while worker.is_alive():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            health_s.append(time.perf_counter() - started)
            if upload_s is None:
                started = time.perf_counter()
                assert client.post(f"/v1/jobs/{job_id}/uploads/late.wav", content=body).status_code == 200
                upload_s = time.perf_counter() - started
            time.sleep(0.05)
        worker.join()
    assert outcome["response"].status_code == 200
    assert len(outcome["response"].json()["results"]) >= 6
    assert len(health_s) >= 5, f"the analysis took only {outcome['duration_s']:.2f} s"
    assert max(health_s) < 0.5, health_s
    assert upload_s is not None and upload_s < 2.0


def test_a_dropped_upload_leaves_no_file(live_service) -> None:
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        job_id = client.post("/v1/jobs", json={}).json()["job_id"]
    url = urlparse(live_service.url)
    partial = b"RIFF" + b"\0" * 50_000
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            (
                f"POST /v1/jobs/{job_id}/uploads/dropped.wav HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Content-Type: audio/wav\r\nContent-Length: 2000000\r\n\r\n"
            ).encode()
            + partial
        )
        time.sleep(0.3)
    job_dir = live_service.data_dir / "jobs" / job_id
    deadline = time.monotonic() + 5
    while any((job_dir / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((job_dir / "tmp").iterdir()) == []
    assert list((job_dir / "uploads").iterdir()) == []
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        assert client.get(f"/v1/jobs/{job_id}/uploads/dropped.wav").status_code == 404
        assert client.get("/health").status_code == 200


def test_gateway_event_over_the_real_port(live_service, tools) -> None:
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        reply = client.post(
            "/gateway/handle",
            json={"event": "measurement.create_job", "request_id": 7, "device_id": "d1", "data": {"map": {}}},
            headers={"X-Internal-Token": tools.TOKEN, "X-Request-Id": "abc"},
        )
    assert reply.status_code == 200
    assert len(reply.json()["data"]["job_id"]) == 32
    assert reply.headers["x-request-id"] == "abc"


def test_analysis_of_an_empty_job_is_quick(live_service) -> None:
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        job_id = client.post("/v1/jobs", json={}).json()["job_id"]
        result = client.post(f"/v1/jobs/{job_id}/analyze").json()
    assert result["summary"]["n_recordings"] == 0
    assert result["results"] == []
