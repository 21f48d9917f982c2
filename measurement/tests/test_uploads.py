"""POST /v1/jobs/{job_id}/uploads/{name}: formats, names, limits, rejects, atomicity, replacement."""

from __future__ import annotations

import numpy as np
import pytest


def _tone(rate_hz: int = 48000, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t_s = np.arange(int(rate_hz * seconds)) / rate_hz
    tone = 0.3 * np.sin(2 * np.pi * 440 * t_s)
    return np.stack([tone] + [0.1 * tone] * (channels - 1), axis=1) if channels > 1 else tone


def _stored_files(app, job_id: str) -> tuple[list[str], list[str]]:
    job_dir = app.data_dir / "jobs" / job_id
    return sorted(p.name for p in (job_dir / "uploads").iterdir()), sorted(p.name for p in (job_dir / "tmp").iterdir())


class TestFormats:
    @pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
    async def test_wav_subtypes_are_stored(self, app, tools, subtype: str) -> None:
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(_tone(), 48000, subtype=subtype)
        response = await app.client.post(
            f"/v1/jobs/{job_id}/uploads/rec.wav", content=body, headers={"content-type": "audio/wav"}
        )
        assert response.status_code == 200, response.text
        info = response.json()
        assert (info["subtype"], info["sample_rate_hz"], info["n_channels"]) == (subtype, 48000, 1)
        assert info["duration_s"] == pytest.approx(1.0)
        assert info["size_bytes"] == len(body)
        assert (app.data_dir / "jobs" / job_id / "uploads" / "rec.wav").read_bytes() == body

    async def test_flac_24_bit_stereo(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(_tone(44100, channels=2), 44100, subtype="PCM_24", format="FLAC")
        response = await app.client.post(
            f"/v1/jobs/{job_id}/uploads/rec.flac", content=body, headers={"content-type": "application/octet-stream"}
        )
        assert response.status_code == 200, response.text
        assert (response.json()["format"], response.json()["n_channels"]) == ("FLAC", 2)

    @pytest.mark.parametrize("rate_hz", [8000, 192000])
    async def test_extreme_sample_rates_are_accepted(self, app, tools, rate_hz: int) -> None:
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(_tone(rate_hz, 0.5), rate_hz)
        response = await app.client.post(f"/v1/jobs/{job_id}/uploads/r.wav", content=body)
        assert response.status_code == 200
        assert response.json()["sample_rate_hz"] == rate_hz

    async def test_multipart_field_file(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(_tone(), 48000)
        response = await app.client.post(
            f"/v1/jobs/{job_id}/uploads/mp.wav", files={"file": ("x.wav", body, "audio/wav")}, data={"note": "hi"}
        )
        assert response.status_code == 200, response.text
        assert (app.data_dir / "jobs" / job_id / "uploads" / "mp.wav").read_bytes() == body

    async def test_multipart_without_file_field_is_400(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        response = await app.client.post(
            f"/v1/jobs/{job_id}/uploads/mp.wav", files={"audio": ("x.wav", b"RIFF", "audio/wav")}
        )
        assert response.status_code == 400
        assert "'file'" in response.json()["error"]["message"]


class TestNames:
    # percent-encoded dots reach the server as dots (a client would otherwise normalise "/.." away)
    @pytest.mark.parametrize(
        "name", ["%2E%2E", "%2E", "...", "a b.wav", "x" * 101, "ü.wav", "a/b.wav", "%2E%2E/x", "%2E%2E%2Fx", "a%5Cb"]
    )
    async def test_bad_names_are_400(self, app, tools, name: str) -> None:
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(_tone(), 48000)
        response = await app.client.post(f"/v1/jobs/{job_id}/uploads/{name}", content=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"
        uploads, temps = _stored_files(app, job_id)
        assert uploads == [] and temps == []

    async def test_empty_name_is_400(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        response = await app.client.post(f"/v1/jobs/{job_id}/uploads/", content=b"x")
        assert response.status_code == 400

    @pytest.mark.parametrize("name", ["a", "x" * 100, "mic_1-speaker_2.take.3.WAV", ".hidden", "a..b"])
    async def test_good_names(self, app, tools, name: str) -> None:
        job_id = await tools.new_job(app.client)
        response = await app.client.post(f"/v1/jobs/{job_id}/uploads/{name}", content=tools.wav_bytes(_tone(), 48000))
        assert response.status_code == 200, response.text
        assert response.json()["name"] == name


class TestRejects:
    @pytest.mark.parametrize(
        ("make_body", "reason"),
        [
            (lambda tools: b"", "empty"),
            (lambda tools: b"hello, this is certainly not audio" * 10, "not a WAV or FLAC"),
            (lambda tools: tools.wav_bytes(_tone(), 48000)[:30000], "truncated"),
            (lambda tools: tools.wav_bytes(np.zeros(48000), 48000), "silent"),
            (lambda tools: tools.wav_bytes(np.full(48000, 1e-6), 48000, subtype="FLOAT"), "silent"),
            (lambda tools: tools.wav_bytes(_tone(4000), 4000), "sample rate"),
            (lambda tools: tools.wav_bytes(_tone(), 48000)[:44], "truncated"),
            (lambda tools: tools.wav_bytes(np.zeros(0), 48000), "no audio frames"),
            (lambda tools: tools.wav_bytes(_tone(), 48000, format="AIFF"), "unsupported audio format"),
        ],
        ids=[
            "zero-length",
            "text",
            "truncated",
            "silent",
            "nearly-silent",
            "4 kHz",
            "header-only",
            "no-frames",
            "aiff",
        ],
    )
    async def test_reject_with_reason_and_store_nothing(self, app, tools, make_body, reason: str) -> None:
        job_id = await tools.new_job(app.client)
        response = await app.client.post(f"/v1/jobs/{job_id}/uploads/bad.wav", content=make_body(tools))
        assert response.status_code == 400, response.text
        assert reason in response.json()["error"]["message"]
        assert _stored_files(app, job_id) == ([], [])
        assert (await app.client.get(f"/v1/jobs/{job_id}/uploads/bad.wav")).status_code == 404

    async def test_unknown_job_is_404(self, app, tools) -> None:
        response = await app.client.post(
            "/v1/jobs/0123456789abcdef0123456789abcdef/uploads/a.wav", content=tools.wav_bytes(_tone(), 48000)
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestSizeLimit:
    async def test_declared_length_over_the_limit_is_413_before_reading(self, small_app, tools) -> None:
        job_id = await tools.new_job(small_app.client)
        sent = []

        async def body():
            for _ in range(50):
                sent.append(1)
                yield b"\0" * 8192

        response = await small_app.client.post(
            f"/v1/jobs/{job_id}/uploads/big.wav", content=body(), headers={"content-length": str(50 * 8192)}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "message_too_large"
        assert len(sent) <= 1  # answered from the header, the body was not read
        assert _stored_files(small_app, job_id) == ([], [])

    async def test_streamed_body_over_the_limit_is_413(self, small_app, tools) -> None:
        job_id = await tools.new_job(small_app.client)

        async def body():  # no content-length: chunked
            for _ in range(50):
                yield b"\0" * 8192

        response = await small_app.client.post(f"/v1/jobs/{job_id}/uploads/big.wav", content=body())
        assert response.status_code == 413
        assert _stored_files(small_app, job_id) == ([], [])

    async def test_multipart_over_the_limit_is_413(self, small_app, tools) -> None:
        job_id = await tools.new_job(small_app.client)
        body = tools.wav_bytes(_tone(48000, 2.0), 48000)  # 192 kB > 0.1 MB
        response = await small_app.client.post(f"/v1/jobs/{job_id}/uploads/big.wav", files={"file": ("a.wav", body)})
        assert response.status_code == 413
        assert _stored_files(small_app, job_id) == ([], [])

    async def test_just_under_the_limit_is_stored(self, small_app, tools) -> None:
        job_id = await tools.new_job(small_app.client)
        body = tools.wav_bytes(_tone(48000, 1.0), 48000)  # 96 kB < 0.1 MB
        response = await small_app.client.post(f"/v1/jobs/{job_id}/uploads/ok.wav", content=body)
        assert response.status_code == 200


class TestReplace:
    async def test_same_name_again_replaces_the_recording(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        url = f"/v1/jobs/{job_id}/uploads/take.wav"
        assert (await app.client.post(url, content=tools.wav_bytes(_tone(48000, 1.0), 48000))).status_code == 200
        second = tools.wav_bytes(_tone(44100, 2.0), 44100)
        assert (await app.client.post(url, content=second)).status_code == 200
        info = (await app.client.get(url)).json()
        assert (info["sample_rate_hz"], info["duration_s"]) == (44100, pytest.approx(2.0))
        assert _stored_files(app, job_id) == (["take.wav"], [])

    async def test_a_rejected_retry_keeps_the_previous_recording(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        url = f"/v1/jobs/{job_id}/uploads/take.wav"
        first = tools.wav_bytes(_tone(), 48000)
        assert (await app.client.post(url, content=first)).status_code == 200
        assert (await app.client.post(url, content=first[:1000])).status_code == 400
        assert (app.data_dir / "jobs" / job_id / "uploads" / "take.wav").read_bytes() == first
