"""Whole measurements with the virtual phones of `sonalyze_devices` against the five real services."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from sonalyze_devices.client import Push
from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, DemoResult, run_demo
from sonalyze_suite import Suite
from sonalyze_suite.launcher import free_port

pytestmark = pytest.mark.e2e

SPEAKERS = ("speaker_1", "speaker_2")
MICS = ("mic_1", "mic_2", "mic_3")
CHECKED_BANDS = ("500", "1000", "2000")


async def run_session(suite: Suite, **options: object) -> DemoResult:
    demo = DemoOptions(gateway_url=suite.config.url("gateway"), session_timeout_s=240, **options)  # type: ignore[arg-type]
    return await run_demo(demo, Progress(io.StringIO()))


def timeouts_naming(result: DemoResult) -> list[dict[str, object]]:
    return [e for e in result.errors if e.get("code") == "step_timeout"]


class TestCompleteSession:
    async def test_two_speakers_three_microphones_measure_the_simulated_room(self, full_suite: Suite) -> None:
        result = await run_session(full_suite, seed=3)

        assert result.session_complete, result.errors
        assert result.analysis is not None, result.errors
        assert result.ok, (result.errors, result.phone_errors)
        assert set(result.measured) == {(s, m) for s in SPEAKERS for m in MICS}
        for pair, item in result.measured.items():
            assert item["status"] == "ok", (pair, item)
            simulated_bands = result.simulated[pair]["bands"]
            for band in CHECKED_BANDS:
                measured_rt60_s = item["bands"][band]["rt60_s"]
                simulated_rt60_s = simulated_bands[band]["rt60_s"]
                assert measured_rt60_s is not None and simulated_rt60_s is not None, (pair, band)
                assert measured_rt60_s == pytest.approx(simulated_rt60_s, rel=0.15), (pair, band)


class TestFaults:
    async def test_silent_microphone_is_named_then_the_retried_speaker_completes(self, full_suite: Suite) -> None:
        result = await run_session(full_suite, seed=4, drop_mic=True)

        timeouts = timeouts_naming(result)
        assert len(timeouts) == 1, result.errors
        assert timeouts[0]["missing_device_ids"] == [result.devices["mic_3"]]
        assert result.ok, (result.errors, result.phone_errors)

    async def test_microphone_that_reconnects_within_the_grace_period_completes(self, full_suite: Suite) -> None:
        result = await run_session(full_suite, seed=5, disconnect_reconnect=True)

        assert timeouts_naming(result) == []
        assert result.ok, (result.errors, result.phone_errors)

    async def test_measurement_service_killed_mid_session_then_the_retried_speaker_completes(
        self, full_suite: Suite
    ) -> None:
        state = {"killed": False, "restarted": False}

        async def admin_hook(push: Push) -> None:
            if push.event == "measurement.speaker_complete" and not state["killed"]:
                state["killed"] = True
                await asyncio.to_thread(full_suite.kill_service, "measurement")
            elif push.event == "measurement.error" and state["killed"] and not state["restarted"]:
                state["restarted"] = True
                await asyncio.to_thread(full_suite.start_service, "measurement")
                await asyncio.to_thread(full_suite.wait_healthy, ["measurement"], 60.0)

        result = await run_session(full_suite, seed=6, admin_hook=admin_hook)

        assert state == {"killed": True, "restarted": True}
        assert result.errors and result.errors[0]["code"] == "step_timeout", result.errors
        # the phones that could not upload were told why, in the suite's own words
        assert any("service_unavailable" in e for errors in result.phone_errors.values() for e in errors), (
            result.phone_errors
        )
        assert result.ok, (result.errors, result.phone_errors)


class TestStorageRecord:
    async def test_storage_lists_the_devices_lobby_participants_measurements_outputs_and_simulation_of_a_run(
        self, full_suite: Suite
    ) -> None:
        result = await run_session(full_suite, seed=7)
        assert result.ok, (result.errors, result.phone_errors)

        async with httpx.AsyncClient(base_url=full_suite.config.url("storage"), timeout=10) as http:

            async def items(path: str, **params: str) -> list[dict[str, Any]]:
                response = await http.get(path, params={**params, "limit": "500"})
                assert response.status_code == 200, response.text
                return response.json()["items"]

            async def snapshot() -> dict[str, Any]:
                return {
                    "devices": {d for d in result.devices.values() if await items("/v1/devices", device_id=d)},
                    "lobbies": await items("/v1/lobbies", lobby_id=result.lobby_id),
                    "participants": await items("/v1/participants", lobby_id=result.lobby_id),
                    "measurements": await items("/v1/measurements", job_id=result.job_id),
                    "outputs": await items("/v1/analysis-outputs", job_id=result.job_id),
                    "simulation_results": await items("/v1/simulation-results", job_id=result.simulation_id),
                }

            # the services deliver through their outboxes in the background: wait, bounded
            for _ in range(60):
                record = await snapshot()
                if (
                    len(record["outputs"]) == 6
                    and len(record["simulation_results"]) == 6
                    and len(record["devices"]) == len(result.devices)
                ):
                    break
                await asyncio.sleep(0.5)

        assert record["devices"] == set(result.devices.values())
        assert [lobby["code"] for lobby in record["lobbies"]] == [result.lobby_code]
        assert {p["device_id"] for p in record["participants"]} == set(result.devices.values())
        slots = {(m["speaker_slot_id"], m["mic_slot_id"]) for m in record["measurements"]}
        assert slots == {(s, m) for s in SPEAKERS for m in MICS}
        assert all(m["device_id"] == result.devices[m["mic_slot_id"]] for m in record["measurements"])
        assert len(record["outputs"]) == 6
        assert all(o["status"] == "ok" and o["metrics"]["broadband"]["rt60_s"] for o in record["outputs"])
        pairs = {(r["source_id"], r["microphone_id"]) for r in record["simulation_results"]}
        assert pairs == {(s, m) for s in SPEAKERS for m in MICS}


class TestDemoCommand:
    def test_demo_starts_the_suite_when_none_answers_and_prints_the_table(self, tmp_path: Any) -> None:
        ports = {name: free_port() for name in ("gateway", "lobby", "measurement", "simulation", "storage")}
        env = {
            **os.environ,
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
            "MEASUREMENT_DATA_DIR": str(tmp_path / "data"),
        }
        env.pop("LOBBY_DATABASE_URL", None)
        env.pop("STORAGE_DATABASE_URL", None)
        completed = subprocess.run(
            [sys.executable, "-m", "sonalyze_devices", "--gateway", f"ws://127.0.0.1:{ports['gateway']}/ws",
             "--speakers", "1", "--microphones", "2"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, output
        assert "starting the local suite" in output
        table = output[output.index("speaker    mic") :].splitlines()
        assert [line.split()[:2] for line in table[3:5]] == [["speaker_1", "mic_1"], ["speaker_1", "mic_2"]]
        assert "every pair analysed" in output
        # the suite it started is gone again
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{ports['gateway']}/healthz", timeout=2)
