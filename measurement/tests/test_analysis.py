"""POST /v1/jobs/{job_id}/analyze through the app: results, failures, persistence, quality, debug audio."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
import soundfile as sf
from asgi_lifespan import LifespanManager
from reference_cases import ReferenceCase

from sonalyze_measurement.main import create_app

BANDS = ("125", "250", "500", "1000", "2000", "4000", "8000")


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"JSON contains {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def good_recording(signal_48k, tools) -> bytes:
    signal, _ = signal_48k
    recording, _ = tools.recording_of(signal, ReferenceCase("good", pnr_db=50.0, drift_ppm=120.0))
    return tools.wav_bytes(recording, 44100)


class TestAnalysis:
    async def test_one_bad_recording_fails_alone(self, app, tools, signal_48k, good_recording) -> None:
        _, signal_id = signal_48k
        job_id = await tools.new_job(app.client)
        noise = np.random.default_rng(3).normal(0, 0.1, 10 * 44100)
        await app.client.put(
            f"/v1/jobs/{job_id}/recordings/good.wav",
            json={"speaker_slot_id": "spk1", "mic_slot_id": "mic1", "signal_id": signal_id},
        )
        assert (await app.client.post(f"/v1/jobs/{job_id}/uploads/good.wav", content=good_recording)).status_code == 200
        assert (
            await app.client.post(f"/v1/jobs/{job_id}/uploads/noise.wav", content=tools.wav_bytes(noise, 44100))
        ).status_code == 200
        response = await app.client.post(f"/v1/jobs/{job_id}/analyze")
        assert response.status_code == 200
        body = _strict_json(response.text)
        assert body["job_id"] == job_id
        by_name = {item["upload_name"]: item for item in body["results"]}
        good, bad = by_name["good.wav"], by_name["noise.wav"]
        assert good["status"] == "ok" and good["error"] is None
        assert (good["speaker_slot_id"], good["mic_slot_id"]) == ("spk1", "mic1")
        assert set(good["bands"]) == set(BANDS)
        assert 0 < good["broadband"]["sti"] <= 1
        assert good["bands"]["1000"]["t30_s"] == pytest.approx(1.0, rel=0.05)
        assert bad["status"] == "failed"
        assert bad["error"]["code"] == "sync_not_found"
        assert "chirp" in bad["error"]["message"]
        assert (bad["speaker_slot_id"], bad["mic_slot_id"]) == (None, None)
        assert body["summary"]["n_ok"] == 1 and body["summary"]["n_failed"] == 1
        assert body["summary"]["failed"] == ["noise.wav"]
        assert body["summary"]["bands_mean"]["1000"]["t30_s"] == pytest.approx(good["bands"]["1000"]["t30_s"])

        job = _strict_json((await app.client.get(f"/v1/jobs/{job_id}")).text)
        assert job["analysis"]["state"] == "done"
        assert job["analysis"]["results"] == body["results"]
        assert job["analysis"]["summary"] == body["summary"]

    async def test_quality_block(self, app, tools, signal_48k, good_recording) -> None:
        _, signal_id = signal_48k
        job_id = await tools.new_job(app.client)
        await app.client.put(f"/v1/jobs/{job_id}/recordings/r.wav", json={"signal_id": signal_id})
        await app.client.post(f"/v1/jobs/{job_id}/uploads/r.wav", content=good_recording)
        item = (await app.client.post(f"/v1/jobs/{job_id}/analyze")).json()["results"][0]
        quality = item["quality"]
        assert quality["drift_ppm"] == pytest.approx(120.0, abs=2.0)
        # the case's delay plus the direct sound's 20 ms, where the chirp peaks
        assert quality["offset_s"] == pytest.approx(0.8 + 0.02, abs=0.001)
        assert quality["resampled"] is True
        assert quality["recording_sample_rate_hz"] == 44100 and quality["signal_sample_rate_hz"] == 48000
        assert quality["clipping"]["clipped"] is False
        assert quality["inr_db"]["1000"] > 30
        assert set(quality["noise_floor_db"]) == {"broadband", *BANDS}
        assert isinstance(quality["null_reasons"], dict)
        assert quality["sti_assumptions"]["speech_level_dba"] > 0
        assert quality["signal_id"] == signal_id

    async def test_unannounced_upload_assumes_the_default_signal_at_its_rate(self, app, tools, good_recording) -> None:
        job_id = await tools.new_job(app.client)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/r.wav", content=good_recording)
        item = (await app.client.post(f"/v1/jobs/{job_id}/analyze")).json()["results"][0]
        default_44k = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 44100})).json()
        # the 44.1 kHz default is the same signal in time, so a 48 kHz playback is still measured right
        assert item["status"] == "ok"
        assert (item["speaker_slot_id"], item["mic_slot_id"]) == (None, None)
        assert item["quality"]["signal_id"] == default_44k["signal_id"]
        assert item["quality"]["resampled"] is False
        assert item["bands"]["1000"]["t30_s"] == pytest.approx(1.0, rel=0.05)

    async def test_stereo_uses_the_first_channel(self, app, tools, signal_48k) -> None:
        signal, _ = signal_48k
        recording, _ = tools.recording_of(signal, ReferenceCase("stereo", pnr_db=50.0, recording_rate_hz=48000))
        noise = np.random.default_rng(1).normal(0, 0.2, len(recording))
        job_id = await tools.new_job(app.client)
        body = tools.wav_bytes(np.stack([recording, noise], axis=1), 48000, subtype="PCM_24")
        await app.client.post(f"/v1/jobs/{job_id}/uploads/st.wav", content=body)
        item = (await app.client.post(f"/v1/jobs/{job_id}/analyze")).json()["results"][0]
        assert item["status"] == "ok", item["error"]
        assert item["quality"]["n_channels"] == 2
        assert item["quality"]["resampled"] is False

    async def test_clipping_is_reported(self, app, tools, signal_48k) -> None:
        signal, _ = signal_48k
        recording, _ = tools.recording_of(signal, ReferenceCase("loud", pnr_db=50.0))
        job_id = await tools.new_job(app.client)
        clipped = np.clip(recording * 3.0, -1.0, 1.0)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/c.wav", content=tools.wav_bytes(clipped, 44100, "FLOAT"))
        item = (await app.client.post(f"/v1/jobs/{job_id}/analyze")).json()["results"][0]
        assert item["quality"]["clipping"]["clipped"] is True
        assert item["quality"]["clipping"]["clipped_samples"] > 0
        assert any("clipped" in warning for warning in item["quality"]["warnings"])

    async def test_8_khz_recording_nulls_the_bands_it_cannot_hold(self, app, tools, signal_48k) -> None:
        signal, signal_id = signal_48k
        recording, _ = tools.recording_of(signal, ReferenceCase("phone", pnr_db=50.0, recording_rate_hz=8000))
        job_id = await tools.new_job(app.client)
        await app.client.put(f"/v1/jobs/{job_id}/recordings/n.wav", json={"signal_id": signal_id})
        await app.client.post(f"/v1/jobs/{job_id}/uploads/n.wav", content=tools.wav_bytes(recording, 8000))
        item = _strict_json((await app.client.post(f"/v1/jobs/{job_id}/analyze")).text)["results"][0]
        assert item["status"] == "ok", item["error"]
        assert item["bands"]["1000"]["t30_s"] == pytest.approx(1.0, rel=0.1)
        for band in ("4000", "8000"):
            assert all(value is None for value in item["bands"][band].values())
            assert "8000 Hz recording" in item["quality"]["null_reasons"][f"bands.{band}.t30_s"]
        assert item["broadband"]["sti"] is None
        assert "broadband.sti" in item["quality"]["null_reasons"]

    async def test_every_null_has_a_reason(self, app, tools, signal_48k) -> None:
        signal, _ = signal_48k
        recording, _ = tools.recording_of(signal, ReferenceCase("noisy", pnr_db=10.0, t60_1k_s=2.0, drr_db=-8))
        job_id = await tools.new_job(app.client)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/n.wav", content=tools.wav_bytes(recording, 44100))
        item = _strict_json((await app.client.post(f"/v1/jobs/{job_id}/analyze")).text)["results"][0]
        if item["status"] != "ok":
            assert item["error"]["message"]
            return
        reasons = item["quality"]["null_reasons"]
        for name, value in item["broadband"].items():
            assert value is not None or f"broadband.{name}" in reasons
        for band, values in item["bands"].items():
            for name, value in values.items():
                assert value is not None or f"bands.{band}.{name}" in reasons
                assert value is None or math.isfinite(value)

    async def test_unknown_job_is_404(self, app) -> None:
        response = await app.client.post("/v1/jobs/0123456789abcdef0123456789abcdef/analyze")
        assert response.status_code == 404


async def test_debug_audio_writes_aligned_recording_and_ir(tmp_path, tools, good_recording) -> None:
    settings = tools.make_settings(tmp_path, measurement_debug_audio=True)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://measurement", timeout=60) as client:
            job_id = await tools.new_job(client)
            await client.post(f"/v1/jobs/{job_id}/uploads/take1.wav", content=good_recording)
            item = (await client.post(f"/v1/jobs/{job_id}/analyze")).json()["results"][0]
    assert item["status"] == "ok"
    written = sorted(p.name for p in (settings.measurement_debug_audio_dir / job_id).iterdir())
    assert written == ["take1.aligned.wav", "take1.ir.wav"]
    info = sf.info(str(settings.measurement_debug_audio_dir / job_id / "take1.ir.wav"))
    assert info.samplerate == 44100  # unannounced 44.1 kHz upload: the 44.1 kHz default signal
    assert info.duration == pytest.approx(3.05)


class TestDeadline:
    async def test_an_analysis_past_its_timeout_is_stopped_by_its_worker(
        self, tmp_path_factory, tools, signal_48k, good_recording
    ) -> None:
        """Issue 14: the worker stops itself at the timeout instead of analysing on for no one.

        10 ms: far below any analysis, so the worker is always the one that stops it, however fast the machine."""
        _, signal_id = signal_48k
        settings = tools.make_settings(tmp_path_factory.mktemp("deadline"), measurement_analysis_timeout_s=0.01)
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://m", timeout=120) as client:
                job_id = await tools.new_job(client)
                await client.post(f"/v1/jobs/{job_id}/uploads/good.wav", content=good_recording)
                await client.post(f"/v1/jobs/{job_id}/analyze")  # the first one may wait for the worker's imports
                body = (await client.post(f"/v1/jobs/{job_id}/analyze")).json()
        [result] = body["results"]
        assert result["status"] == "failed"
        # the worker's own message (it stopped), not the pool's (which would only have stopped waiting)
        assert "took too long and was stopped after 0.01 s" in result["error"]["message"], result["error"]


class TestDeadlineAfterTheAnalysisProper:
    def test_an_alarm_while_the_result_is_assembled_is_a_failed_result(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The worker's alarm can ring outside `analyze_recording`'s own handler (e.g. in `jsonable`):
        the worker still answers a failed result item instead of raising into the pool (which was a 500)."""
        import time

        from sonalyze_measurement import analysis_pool
        from sonalyze_measurement.analysis.metrics import AnalysisTask

        def analysis_whose_tail_is_slow(task: AnalysisTask) -> dict:
            time.sleep(2.0)  # stands for the result assembly after the analysis' own try
            return {"status": "ok"}

        monkeypatch.setattr(analysis_pool, "analyze_recording", analysis_whose_tail_is_slow)
        task = AnalysisTask("job", "late.wav", "/nonexistent.wav", "/nonexistent.wav", {}, None, "s1", "m1")
        result = analysis_pool._analyze_within(task, 0.05)
        assert result["status"] == "failed"
        assert result["upload_name"] == "late.wav" and result["mic_slot_id"] == "m1"
        assert result["error"] == {
            "code": "analysis_failed",
            "message": "the analysis took too long and was stopped after 0.05 s",
        }
