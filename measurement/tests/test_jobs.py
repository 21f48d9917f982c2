"""Jobs, recording announcements, upload metadata and the gateway events."""

from __future__ import annotations

import numpy as np
import pytest


def _tone_wav(tools, rate_hz: int = 48000) -> bytes:
    t_s = np.arange(rate_hz) / rate_hz
    return tools.wav_bytes(0.3 * np.sin(2 * np.pi * 440 * t_s), rate_hz)


class TestJobs:
    async def test_create_and_get(self, app, tools) -> None:
        response = await app.client.post("/v1/jobs", json={"map": {"room": {"height_m": 2.5}}, "meta": {"n": 1}})
        assert response.status_code == 201
        job_id = response.json()["job_id"]
        job = (await app.client.get(f"/v1/jobs/{job_id}")).json()
        assert job["map"] == {"room": {"height_m": 2.5}}
        assert job["meta"] == {"n": 1}
        assert job["signal_id"] is None
        assert job["uploads"] == [] and job["recordings"] == []
        assert job["analysis"]["state"] == "not_started"
        assert (app.data_dir / "jobs" / job_id / "job.json").is_file()

    async def test_job_with_a_known_signal(self, app, signal_48k) -> None:
        _, signal_id = signal_48k
        response = await app.client.post("/v1/jobs", json={"map": {}, "meta": {}, "signal_id": signal_id})
        job = (await app.client.get(f"/v1/jobs/{response.json()['job_id']}")).json()
        assert job["signal_id"] == signal_id

    async def test_unknown_signal_is_400(self, app) -> None:
        response = await app.client.post("/v1/jobs", json={"map": {}, "signal_id": "sig_000000000000000000000000"})
        assert response.status_code == 400

    @pytest.mark.parametrize("job_id", ["0123456789abcdef0123456789abcdef", "nope", "..%2F..%2Fetc"])
    async def test_unknown_job_is_404(self, app, job_id: str) -> None:
        response = await app.client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_map_must_be_an_object(self, app) -> None:
        response = await app.client.post("/v1/jobs", json={"map": [1, 2]})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"


class TestRecordings:
    async def test_announcement_is_idempotent_and_reaches_the_upload(self, app, tools, signal_48k) -> None:
        _, signal_id = signal_48k
        job_id = await tools.new_job(app.client)
        body = {"speaker_slot_id": "speaker_1", "mic_slot_id": "mic_2", "device_id": "phone-7", "signal_id": signal_id}
        url = f"/v1/jobs/{job_id}/recordings/s1-m2.wav"
        first = await app.client.put(url, json=body)
        second = await app.client.put(url, json=body)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert (await app.client.get(f"/v1/jobs/{job_id}/uploads/s1-m2.wav")).status_code == 404
        await app.client.post(f"/v1/jobs/{job_id}/uploads/s1-m2.wav", content=_tone_wav(tools))
        info = (await app.client.get(f"/v1/jobs/{job_id}/uploads/s1-m2.wav")).json()
        assert (info["speaker_slot_id"], info["mic_slot_id"], info["device_id"], info["signal_id"]) == (
            "speaker_1",
            "mic_2",
            "phone-7",
            signal_id,
        )
        job = (await app.client.get(f"/v1/jobs/{job_id}")).json()
        assert [r["upload_name"] for r in job["recordings"]] == ["s1-m2.wav"]
        assert job["uploads"][0]["speaker_slot_id"] == "speaker_1"

    async def test_a_changed_announcement_replaces_the_old_one(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        url = f"/v1/jobs/{job_id}/recordings/r.wav"
        await app.client.put(url, json={"speaker_slot_id": "a", "mic_slot_id": "b"})
        changed = await app.client.put(url, json={"speaker_slot_id": "c", "mic_slot_id": "b"})
        assert changed.json()["speaker_slot_id"] == "c"

    async def test_unknown_job_bad_name_unknown_signal(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        assert (
            await app.client.put("/v1/jobs/0123456789abcdef0123456789abcdef/recordings/r.wav", json={})
        ).status_code == 404
        assert (await app.client.put(f"/v1/jobs/{job_id}/recordings/a%20b", json={})).status_code == 400
        response = await app.client.put(f"/v1/jobs/{job_id}/recordings/r.wav", json={"signal_id": "../../x"})
        assert response.status_code == 400

    async def test_upload_metadata_before_and_after(self, app, tools) -> None:
        job_id = await tools.new_job(app.client)
        assert (await app.client.get(f"/v1/jobs/{job_id}/uploads/x.wav")).status_code == 404
        await app.client.post(f"/v1/jobs/{job_id}/uploads/x.wav", content=_tone_wav(tools, 44100))
        info = (await app.client.get(f"/v1/jobs/{job_id}/uploads/x.wav")).json()
        assert info["sample_rate_hz"] == 44100
        assert info["speaker_slot_id"] is None and info["mic_slot_id"] is None
        assert info["uploaded_at"].endswith("+00:00")


class TestGatewayEvents:
    async def _handle(self, app, tools, event: str, data: dict, token: str | None = None):
        headers = {"X-Internal-Token": tools.TOKEN if token is None else token}
        body = {"event": event, "request_id": "r1", "device_id": "phone-1", "data": data}
        return await app.client.post("/gateway/handle", json=body, headers=headers)

    async def test_create_get_and_run(self, app, tools) -> None:
        created = await self._handle(app, tools, "measurement.create_job", {"map": {"a": 1}, "meta": {}})
        assert created.status_code == 200
        job_id = created.json()["data"]["job_id"]
        got = (await self._handle(app, tools, "measurement.get_job", {"job_id": job_id})).json()["data"]
        assert got["map"] == {"a": 1}
        ran = (await self._handle(app, tools, "analysis.run", {"job_id": job_id})).json()["data"]
        assert ran["job_id"] == job_id
        assert ran["results"]["recordings"] == []
        assert ran["results"]["summary"]["n_recordings"] == 0
        assert ran["summary"]["n_recordings"] == 0

    async def test_unknown_job_is_a_not_found_reply(self, app, tools) -> None:
        reply = (await self._handle(app, tools, "measurement.get_job", {"job_id": "nope"})).json()
        assert reply["error"]["code"] == "not_found"

    async def test_missing_field_is_bad_request(self, app, tools) -> None:
        reply = (await self._handle(app, tools, "analysis.run", {})).json()
        assert reply["error"]["code"] == "bad_request"
        assert "job_id" in reply["error"]["message"]

    async def test_unknown_event(self, app, tools) -> None:
        reply = (await self._handle(app, tools, "measurement.explode", {})).json()
        assert reply["error"]["code"] == "unknown_event"

    async def test_wrong_token_is_401(self, app, tools) -> None:
        response = await self._handle(app, tools, "measurement.create_job", {}, token="wrong")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


class TestJobStore:
    async def test_job_files_are_written_off_the_event_loop_and_locks_do_not_pile_up(self, tmp_path, monkeypatch):
        import asyncio
        import threading

        from sonalyze_measurement import storage
        from sonalyze_measurement.schemas import AnalysisState, RecordingAnnouncement

        writers: list[int] = []
        write_json = storage.write_json

        def recorded(path, value) -> None:
            writers.append(threading.get_ident())
            write_json(path, value)

        monkeypatch.setattr(storage, "write_json", recorded)
        jobs = storage.JobStore(tmp_path)
        job = await jobs.create_job({"a": 1}, {}, None)
        announced = await jobs.announce(job.job_id, "r.wav", RecordingAnnouncement(speaker_slot_id="s"))
        async with jobs.analysis_lock(job.job_id):
            assert jobs.held_locks() == 1
            await jobs.save_analysis(job.job_id, AnalysisState(state="running", started_at="t"))
        waiting = [
            asyncio.create_task(jobs.announce(job.job_id, f"{i}.wav", RecordingAnnouncement())) for i in range(5)
        ]
        await asyncio.gather(*waiting)

        assert len(writers) == 8 and threading.get_ident() not in writers
        assert jobs.held_locks() == 0  # every job's lock is gone once nobody holds or awaits it
        assert jobs.load_job(job.job_id).map == {"a": 1}
        assert jobs.recordings(job.job_id)["r.wav"] == announced
        assert sorted(jobs.recordings(job.job_id)) == ["0.wav", "1.wav", "2.wav", "3.wav", "4.wav", "r.wav"]
        assert jobs.load_analysis(job.job_id).state == "running"
