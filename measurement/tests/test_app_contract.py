"""The phone app's HTTP calls (phone-app spec section 4) and results (section 6) against the real service.

Every field the app reads is asserted by name, so a test fails when one goes missing. Recordings are
real WAVs of the service's own signal (or of an impulse response, or of a user's sweep) through the
real pipeline (process pool included).
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import soundfile as sf
from reference_cases import ReferenceCase, design_room
from scipy import signal as sp_signal

APP_RESULT_FIELDS = ("samplerate_hz", "rt", "clarity", "drr", "quality", "frequency_response", "sti", "display_metrics")
DISPLAY_FIELDS = ("key", "label", "value", "formatted_value", "unit", "description", "icon", "category", "sort_order")
APP_METRIC_KEYS = {"rt60", "edt", "sti", "c50", "c80", "d50", "drr"}


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"JSON contains {constant}")

    return json.loads(text, parse_constant=refuse)


def _timeless(results: dict) -> dict:
    return {**results, "quality": {k: v for k, v in results["quality"].items() if k != "analysis_time_s"}}


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def _handle(app, tools, event: str, data: dict) -> dict:
    response = await app.client.post(
        "/gateway/handle",
        json={"event": event, "request_id": "r1", "device_id": "phone-1", "data": data},
        headers={"X-Internal-Token": tools.TOKEN},
    )
    assert response.status_code == 200, response.text
    return _strict_json(response.text)


def assert_app_results(results: dict) -> None:
    """Every field of spec section 6 with the type the app casts it to."""
    for name in APP_RESULT_FIELDS:
        assert name in results, name
    assert isinstance(results["samplerate_hz"], int)
    for name in ("rt60_s", "edt_s", "t20_s", "t30_s", "rt60"):
        assert isinstance(results["rt"][name], float), name
    for name in ("c50_db", "c80_db", "d50"):
        assert isinstance(results["clarity"][name], float), name
    assert isinstance(results["drr"]["drr_db"], float)
    assert isinstance(results["sti"]["sti"], float)
    assert isinstance(results["quality"], dict)
    response = results["frequency_response"]
    assert len(response["frequencies_hz"]) == len(response["magnitude_db"]) >= 10
    assert max(response["magnitude_db"]) == 0.0
    metrics = results["display_metrics"]
    assert {metric["key"] for metric in metrics} == APP_METRIC_KEYS
    for metric in metrics:
        for name in DISPLAY_FIELDS:
            assert name in metric, (metric["key"], name)
        assert isinstance(metric["value"], float) and isinstance(metric["formatted_value"], str)
        assert isinstance(metric["sort_order"], int) and metric["icon"] and metric["category"]
    assert isinstance(results["bands"], dict) and isinstance(results["null_reasons"], dict)


class TestSignal:
    async def test_audio_hash_header_and_signal_json(self, app) -> None:
        audio = await app.client.get("/v1/measurement/audio", params={"sample_rate": 48000, "format": "wav"})
        assert audio.status_code == 200
        assert audio.headers["x-audio-hash"] == _sha(audio.content)
        described = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 48000})).json()
        assert described["audio_hash"] == _sha(audio.content)
        assert described["signal_id"] == audio.headers["x-signal-id"]

    async def test_flac_holds_the_same_samples(self, app) -> None:
        wav = await app.client.get("/v1/measurement/audio", params={"sample_rate": 44100})
        flac = await app.client.get("/v1/measurement/audio", params={"sample_rate": 44100, "format": "flac"})
        assert flac.status_code == 200 and flac.headers["content-type"] == "audio/flac"
        assert flac.headers["x-audio-hash"] == _sha(flac.content) != _sha(wav.content)
        assert flac.headers["x-signal-id"] == wav.headers["x-signal-id"]
        wav_samples, _ = sf.read(io.BytesIO(wav.content), dtype="int16")
        flac_samples, rate_hz = sf.read(io.BytesIO(flac.content), dtype="int16")
        assert rate_hz == 44100 and np.array_equal(wav_samples, flac_samples)
        again = await app.client.get("/v1/measurement/audio", params={"sample_rate": 44100, "format": "flac"})
        assert again.content == flac.content
        info = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 44100, "format": "flac"})).json()
        assert info["audio_hash"] == _sha(flac.content) and info["audio_format"] == "flac"

    async def test_app_sweep_parameters(self, app) -> None:
        ours = await app.client.get("/v1/measurement/audio", params={"f_start_hz": 100, "f_end_hz": 16000})
        apps = await app.client.get("/v1/measurement/audio", params={"sweep_f_start": 100, "sweep_f_end": 16000})
        assert apps.status_code == 200
        assert apps.headers["x-signal-id"] == ours.headers["x-signal-id"]
        assert "f_start_hz=100.0" in apps.headers["x-signal-timing"]

    @pytest.mark.parametrize(
        ("params", "status", "needle"),
        [
            ({"format": "mp3"}, 422, "format"),
            ({"sweep_f_start": 5}, 400, "f_start_hz"),
            ({"f_start_hz": 100, "sweep_f_start": 200}, 400, "sweep_f_start"),
            ({"sweep_f_end": "high"}, 422, "sweep_f_end"),
            ({"sample_rate": 1000}, 400, "sample_rate"),
        ],
    )
    async def test_bad_parameters(self, app, params: dict, status: int, needle: str) -> None:
        for path in ("/v1/measurement/audio", "/v1/measurement/audio/info", "/v1/measurement/signal"):
            response = await app.client.get(path, params=params)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error"]["code"] == "bad_request"
            assert needle in response.json()["error"]["message"]

    async def test_audio_info_gives_the_timing(self, app) -> None:
        response = await app.client.get("/v1/measurement/audio/info", params={"sample_rate": 48000})
        assert response.status_code == 200
        info = response.json()
        assert info["timing"]["sweep_start_s"] > 0 and info["total_duration_s"] == info["audio_duration_seconds"]
        assert info == (await app.client.get("/v1/measurement/signal", params={"sample_rate": 48000})).json()

    async def test_get_audio_info_event(self, app, tools) -> None:
        reply = await _handle(app, tools, "measurement.get_audio_info", {"sample_rate": 44100})
        expected = (await app.client.get("/v1/measurement/audio/info", params={"sample_rate": 44100})).json()
        assert reply["data"] == expected
        bad = await _handle(app, tools, "measurement.get_audio_info", {"format": "ogg"})
        assert bad["error"]["code"] == "bad_request" and "format" in bad["error"]["message"]


class TestSessions:
    async def test_session_signal(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        signal = (await app.client.get("/v1/measurement/signal", params={"sample_rate": 44100, "duration_s": 3})).json()
        url = "/v1/measurement/sessions/sess-1"
        body = {"job_id": job_id, "signal_id": signal["signal_id"]}
        assert (await app.client.put(url, json=body)).status_code == 401
        for _ in range(2):  # idempotent
            response = await app.client.put(url, json=body, headers={"X-Internal-Token": tools.TOKEN})
            assert response.status_code == 200, response.text
            assert response.json() == {"session_id": "sess-1", **body}
        audio = await app.client.get("/v1/measurement/audio", params={"session_id": "sess-1", "sample_rate": 48000})
        assert audio.status_code == 200
        assert audio.headers["x-signal-id"] == signal["signal_id"]
        assert audio.headers["x-audio-hash"] == _sha(audio.content) == signal["audio_hash"]
        info = (await app.client.get("/v1/measurement/audio/info", params={"session_id": "sess-1"})).json()
        assert info["signal_id"] == signal["signal_id"] and info["session_id"] == "sess-1"

    async def test_unknown_and_bad_sessions(self, app, tools) -> None:
        missing = await app.client.get("/v1/measurement/audio", params={"session_id": "nobody"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        headers = {"X-Internal-Token": tools.TOKEN}
        job_id = await tools.new_job(app.client)
        unknown_signal = await app.client.put(
            "/v1/measurement/sessions/s2",
            json={"job_id": job_id, "signal_id": "sig_000000000000000000000000"},
            headers=headers,
        )
        assert unknown_signal.status_code == 400 and "signal_id" in unknown_signal.json()["error"]["message"]
        signal_id = (await app.client.get("/v1/measurement/signal")).json()["signal_id"]
        unknown_job = await app.client.put(
            "/v1/measurement/sessions/s2", json={"job_id": "f" * 32, "signal_id": signal_id}, headers=headers
        )
        assert unknown_job.status_code == 404
        no_job = await app.client.put("/v1/measurement/sessions/s2", json={"signal_id": signal_id}, headers=headers)
        assert no_job.status_code == 422 and no_job.json()["error"]["code"] == "bad_request"


@pytest.fixture(scope="module")
def room_case() -> ReferenceCase:
    return ReferenceCase("app", t60_1k_s=0.8, pnr_db=50.0, drift_ppm=40.0)


@pytest.fixture(scope="module")
def app_recording(signal_48k, tools, room_case) -> bytes:
    signal, _ = signal_48k
    recording, _ = tools.recording_of(signal, room_case)
    return tools.wav_bytes(recording, 44100)


class TestUploadAndResults:
    async def test_app_upload_then_analysis_run(self, app, tools, signal_48k, app_recording) -> None:
        _, signal_id = signal_48k
        job_id = await tools.new_job(app.client)
        name = "recording_phone-mic-1_speaker-1.wav"
        upload = await app.client.post(
            f"/v1/jobs/{job_id}/uploads/{name}", files={"file": (name, app_recording, "audio/wav")}
        )
        assert upload.status_code == 200, upload.text
        assert isinstance(upload.json(), dict) and upload.json()["name"] == name
        audio_hash = _sha((await app.client.get("/v1/measurement/audio", params={"sample_rate": 48000})).content)
        data = {
            "job_id": job_id,
            "source": "sweep_deconvolution_generated",
            "recording_upload": name,
            "audio_hash": audio_hash,
        }
        reply = await _handle(app, tools, "analysis.run", data)
        results = reply["data"]["results"]
        assert_app_results(results)
        assert results["samplerate_hz"] == 44100 and results["quality"]["signal_id"] == signal_id
        assert results["rt"]["rt60_s"] == pytest.approx(0.8, rel=0.1)
        assert results["rt"]["rt60"] == results["rt"]["rt60_s"]
        bands = results["bands"]
        assert results["rt"]["t30_s"] == pytest.approx((bands["500"]["t30_s"] + bands["1000"]["t30_s"]) / 2, abs=1e-3)
        assert results["sti"]["sti"] == results["broadband"]["sti"]
        # C3: the job's analysis carries exactly that object per recording
        analysed = _strict_json((await app.client.post(f"/v1/jobs/{job_id}/analyze")).text)
        (item,) = analysed["results"]
        assert _timeless(item["app_results"]) == _timeless(results)  # the same numbers, analysed afresh
        # after the job's analysis, analysis.run answers exactly its entry (what the lobby pushes)
        assert (await _handle(app, tools, "analysis.run", data))["data"]["results"] == item["app_results"]

    async def test_wrong_audio_hash_is_a_clear_error(self, app, tools, app_recording) -> None:
        job_id = await tools.new_job(app.client)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/r.wav", content=app_recording)
        reply = await _handle(
            app, tools, "analysis.run", {"job_id": job_id, "recording_upload": "r.wav", "audio_hash": "ab" * 32}
        )
        assert reply["error"]["code"] == "bad_request" and "audio_hash" in reply["error"]["message"]

    async def test_failed_recording_is_an_object_without_metrics(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        noise = np.random.default_rng(5).normal(0, 0.1, 8 * 48000)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/n.wav", content=tools.wav_bytes(noise, 48000))
        results = (await _handle(app, tools, "analysis.run", {"job_id": job_id, "recording_upload": "n.wav"}))["data"][
            "results"
        ]
        assert results["status"] == "failed" and results["error"]["code"] == "sync_not_found"
        assert results["display_metrics"] == [] and {m["key"] for m in results["omitted_metrics"]} == APP_METRIC_KEYS

    async def test_a_null_single_number_is_left_out_with_its_reason(self, app, tools) -> None:
        """A sweep from 600 Hz cannot measure the 500 Hz band: RT60 and the others are omitted, never NaN."""
        query = {"sample_rate": 48000, "f_start_hz": 600}
        signal_wav = (await app.client.get("/v1/measurement/audio", params=query)).content
        signal_id = (await app.client.get("/v1/measurement/signal", params=query)).json()["signal_id"]
        recording, _ = tools.recording_of(tools.signal_samples(signal_wav), ReferenceCase("high", pnr_db=50.0))
        job_id = await tools.new_job(app.client)
        await app.client.put(f"/v1/jobs/{job_id}/recordings/hi.wav", json={"signal_id": signal_id})
        await app.client.post(f"/v1/jobs/{job_id}/uploads/hi.wav", content=tools.wav_bytes(recording, 44100))
        response = await app.client.post(
            "/gateway/handle",
            json={
                "event": "analysis.run",
                "request_id": "r",
                "device_id": "d",
                "data": {"job_id": job_id, "recording_upload": "hi.wav"},
            },
            headers={"X-Internal-Token": tools.TOKEN},
        )
        results = _strict_json(response.text)["data"]["results"]
        assert results["status"] == "ok" and results["rt"]["rt60_s"] is None
        omitted = {m["key"]: m["reason"] for m in results["omitted_metrics"]}
        assert {"rt60", "edt", "c50", "c80", "d50", "drr", "sti"} == set(omitted)
        assert "500 Hz" in omitted["rt60"] and "sweep" in omitted["rt60"]
        assert results["display_metrics"] == []
        assert "single.rt60_s" in results["null_reasons"]
        assert min(results["frequency_response"]["frequencies_hz"]) > 800

    async def test_unknown_upload_and_whole_job(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        missing = await _handle(app, tools, "analysis.run", {"job_id": job_id, "recording_upload": "x.wav"})
        assert missing["error"]["code"] == "not_found"
        whole = (await _handle(app, tools, "analysis.run", {"job_id": job_id}))["data"]
        assert whole["results"] == {"recordings": [], "summary": whole["summary"]}
        need = await _handle(app, tools, "analysis.run", {"job_id": job_id, "source": "impulse_response"})
        assert need["error"]["code"] == "bad_request" and "recording_upload" in need["error"]["message"]


class TestOtherSources:
    async def test_impulse_response_upload(self, app, tools, room_case) -> None:
        design = design_room(room_case)
        noise = np.random.default_rng(2).normal(0, 1e-4, len(design.ir))
        ir = 0.5 * design.ir / np.max(np.abs(design.ir)) + noise
        job_id = await tools.new_job(app.client)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/ir.wav", content=tools.wav_bytes(ir, 48000, "PCM_24"))
        reply = await _handle(
            app, tools, "analysis.run", {"job_id": job_id, "recording_upload": "ir.wav", "source": "impulse_response"}
        )
        results = reply["data"]["results"]
        assert_app_results(results)
        assert results["source"] == "impulse_response" and results["quality"]["signal_id"] is None
        truth = design.truth["bands"]
        for band in ("500", "1000", "2000"):
            assert results["bands"][band]["t30_s"] == pytest.approx(truth[band]["t30_s"], rel=0.05), band

    async def test_sweep_deconvolution(self, app, tools, signal_48k, room_case) -> None:
        signal, _ = signal_48k
        timing = (await app.client.get("/v1/measurement/signal")).json()["timing"]
        sweep = signal[timing["sweep_start_samples"] : timing["sweep_end_samples"]]
        design = design_room(room_case)
        played = np.concatenate([np.zeros(24000), sweep, np.zeros(3 * 48000)])
        recording = sp_signal.fftconvolve(played, design.ir)[: len(played)]
        recording = 0.5 * recording / np.max(np.abs(recording))
        recording += np.random.default_rng(4).normal(0, 10 ** (-60 / 20) * 0.5, len(recording))
        job_id = await tools.new_job(app.client)
        sweep_wav = tools.wav_bytes(sweep, 48000)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/my_sweep.wav", content=sweep_wav)
        await app.client.post(f"/v1/jobs/{job_id}/uploads/rec.wav", content=tools.wav_bytes(recording, 48000, "PCM_24"))
        data = {
            "job_id": job_id,
            "recording_upload": "rec.wav",
            "source": "sweep_deconvolution",
            "sweep_upload": "my_sweep.wav",
            "audio_hash": _sha(sweep_wav),
        }
        results = (await _handle(app, tools, "analysis.run", data))["data"]["results"]
        assert_app_results(results)
        assert results["quality"]["sweep_f_start_hz"] == pytest.approx(50, abs=15)
        assert results["quality"]["sweep_f_end_hz"] == pytest.approx(20000, rel=0.15)
        truth = design.truth["bands"]
        for band in ("500", "1000", "2000"):
            assert results["bands"][band]["t30_s"] == pytest.approx(truth[band]["t30_s"], rel=0.05), band
        no_sweep = await _handle(app, tools, "analysis.run", {**data, "sweep_upload": None})
        assert no_sweep["error"]["code"] == "bad_request" and "sweep_upload" in no_sweep["error"]["message"]
        wrong = await _handle(app, tools, "analysis.run", {**data, "audio_hash": "00" * 32})
        assert wrong["error"]["code"] == "bad_request"
        missing = await _handle(app, tools, "analysis.run", {**data, "sweep_upload": "nope.wav"})
        assert missing["error"]["code"] == "not_found"


def test_events_are_served_in_front_of_every_middleware(tmp_path) -> None:
    from sonalyze_measurement.main import create_app
    from sonalyze_measurement.settings import Settings
    from sonalyze_protocol.handlers import GatewayHandleFastPath

    settings = Settings(measurement_data_dir=tmp_path, internal_auth_token="t", log_level="WARNING")
    assert create_app(settings).user_middleware[0].cls is GatewayHandleFastPath
