"""The Sonalyze app's dialect against the five real services (spec phone-app.md).

One 2 speakers x 2 microphones session is run with virtual phones that speak exactly like the app
(`sonalyze_devices.app_scenario`): every answer and push is checked against the app's hard casts on
receipt. Then every row of the spec's WebSocket tables (sections 2 and 3) must have been exercised with
its fields present and typed as the app reads them, so a field that goes missing fails a test here.
The same line-up in our own dialect completes too.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sonalyze_devices.app_contract import PUSHES, RESPONSES, check_fields
from sonalyze_devices.app_phones import app_client
from sonalyze_devices.app_scenario import run_app_demo
from sonalyze_devices.client import DeviceClient
from sonalyze_devices.display import Progress
from sonalyze_devices.scenario import DemoOptions, DemoResult, run_demo
from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e

# optional (O) fields the suite never sends, with the reason; every other O field must show up
NOT_SENT = {
    ("measurement.request_audio", "audio_endpoint"): "we send audio_url, the app reads either",
}
# pushes a clean session never produces: exercised by `error_and_cancel` below
FAULT_PUSHES = ("measurement.error", "measurement.session_cancelled")


@pytest.fixture(scope="module")
async def app_session(full_suite: Suite) -> DemoResult:
    options = DemoOptions(gateway_url=full_suite.config.url("gateway"), n_speakers=2, n_microphones=2, seed=7,
                          session_timeout_s=240, latencies_s=[])  # fmt: skip
    return await run_app_demo(options, Progress(io.StringIO()))


@pytest.fixture(scope="module")
async def error_and_cancel(full_suite: Suite, app_session: DemoResult) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """A second session in the same kind of lobby: a microphone reports an error, then the host cancels."""
    ws_url = full_suite.config.url("gateway").replace("http://", "ws://") + "/ws"
    host, speaker, mic = (app_client(ws_url, f"app-fault-{n}-{app_session.lobby_code}") for n in ("host", "spk", "mic"))
    clients: list[DeviceClient] = [host, speaker, mic]
    for client in clients:
        await client.connect()
    try:
        lobby = await host.request("lobby.create", {})
        for client, role, slot in ((speaker, "speaker", "speaker-1"), (mic, "microphone", "microphone-1")):
            await client.request("lobby.join", {"code": lobby["code"]})
            await host.request("role.assign", {"lobby_id": lobby["lobby_id"], "target_device_id": client.device_id,
                                               "role": role, "role_slot_id": slot, "role_slot_label": None})  # fmt: skip
        job = await host.request("measurement.create_job", {"map": {}, "meta": {"lobby_id": lobby["lobby_id"]}})
        session = await host.request("measurement.create_session", {
            "job_id": job["job_id"], "lobby_id": lobby["lobby_id"],
            "speakers": [{"device_id": speaker.device_id, "slot_id": "speaker-1", "slot_label": "S"}],
            "microphones": [{"device_id": mic.device_id, "slot_id": "microphone-1", "slot_label": "M"}],
        })  # fmt: skip
        ref = {"session_id": session["session_id"]}
        await host.request("measurement.start_speaker", ref)
        await mic.request("measurement.error", {**ref, "error_message": "microphone permission denied",
                                                "error_code": "permission"})  # fmt: skip
        error = await speaker.expect("measurement.error")
        await host.request("measurement.cancel_session", {**ref, "reason": "user_cancelled"})
        cancelled = await mic.expect("measurement.session_cancelled")
        yield {"measurement.error": error, "measurement.session_cancelled": cancelled, "device": {"mic": mic.device_id}}
    finally:
        for client in clients:
            await client.close()


class TestAppDialectSession:
    async def test_two_speakers_two_microphones_complete_with_results_on_every_phone(
        self, app_session: DemoResult
    ) -> None:
        result = app_session
        assert result.violations == {}, result.violations
        assert result.session_complete, (result.errors, result.phone_errors)
        assert result.ok, (result.errors, result.phone_errors, result.results_by_phone)
        assert set(result.measured) == {
            (s, m) for s in ("speaker-1", "speaker-2") for m in ("microphone-1", "microphone-2")
        }
        for pair, measured in result.measured.items():
            assert measured["rt60_s"] is not None and 0.1 < measured["rt60_s"] < 3.0, (pair, measured)
        # every phone but the host got the host's relays (4 recordings), the suite's own pushes on top
        assert all(n >= 4 for slot, n in result.results_by_phone.items() if slot != "host"), result.results_by_phone

    async def test_create_session_answers_inside_the_apps_timer(self, app_session: DemoResult) -> None:
        assert app_session.create_session_s is not None and app_session.create_session_s < 0.5

    async def test_every_phone_followed_the_phases(self, app_session: DemoResult) -> None:
        for slot, client in app_session.clients.items():
            phases = [p.data["phase"] for p in client.seen if p.event == "measurement.phase_update"]
            assert {"waiting_for_ready", "uploading", "processing"} <= set(phases), (slot, phases)


class TestSpecTablesAreCovered:
    """Spec sections 2 and 3, row by row, against what the real suite answered and pushed."""

    def answers(self, result: DemoResult) -> dict[str, list[Any]]:
        seen: dict[str, list[Any]] = {}
        for client in result.clients.values():
            for event, data in client.answers:
                seen.setdefault(event, []).append(data)
        return seen

    def pushes(self, result: DemoResult) -> dict[str, list[dict[str, Any]]]:
        seen: dict[str, list[dict[str, Any]]] = {}
        for client in result.clients.values():
            for push in client.seen:
                seen.setdefault(push.event, []).append(push.data)
        return seen

    @pytest.mark.parametrize("event", sorted(RESPONSES))
    async def test_section_2_row(self, app_session: DemoResult, event: str) -> None:
        answers = self.answers(app_session).get(event)
        assert answers, f"the app-dialect session never got an answer to {event}"
        for data in answers:
            if RESPONSES[event]:
                check_fields(event, data, RESPONSES[event])
        for field in RESPONSES[event]:
            assert any(isinstance(d, dict) and d.get(field.name) is not None for d in answers), (event, field.name)

    @pytest.mark.parametrize("event", sorted(PUSHES))
    async def test_section_3_row(
        self, app_session: DemoResult, error_and_cancel: dict[str, dict[str, Any]], event: str
    ) -> None:
        pushes = [error_and_cancel[event]] if event in FAULT_PUSHES else self.pushes(app_session).get(event)
        assert pushes, f"the app-dialect session never received {event}"
        for data in pushes:
            check_fields(event, data, PUSHES[event])
        for field in PUSHES[event]:
            if (event, field.name) in NOT_SENT:
                continue
            assert any(d.get(field.name) is not None for d in pushes), f"{event} never carried {field.name}"

    async def test_device_error_names_the_device_and_its_code(
        self, error_and_cancel: dict[str, dict[str, Any]]
    ) -> None:
        error = error_and_cancel["measurement.error"]
        assert error["error_device_id"] == error_and_cancel["device"]["mic"]
        assert (error["error_code"], error["error_message"]) == ("permission", "microphone permission denied")


class TestOwnDialect:
    async def test_two_speakers_two_microphones_in_our_dialect(self, full_suite: Suite) -> None:
        options = DemoOptions(gateway_url=full_suite.config.url("gateway"), n_speakers=2, n_microphones=2, seed=8,
                              session_timeout_s=240)  # fmt: skip
        result = await run_demo(options, Progress(io.StringIO()))
        assert result.ok, (result.errors, result.phone_errors)
        assert set(result.measured) == {(s, m) for s in ("speaker_1", "speaker_2") for m in ("mic_1", "mic_2")}
