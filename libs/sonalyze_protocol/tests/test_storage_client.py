"""`StorageClient` and `StorageRecorder`: outcomes per HTTP answer, payloads, and the real thing —
storage stopped while a measurement's worth of records is written, every record there exactly once after."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from sonalyze_protocol.json_rule import jsonable
from sonalyze_protocol.logs import bind_context
from sonalyze_protocol.outbox import Backoff, Delivery, DeliveryOutcome, Outbox, OutboxEntry
from sonalyze_protocol.storage_client import (
    PATH_BY_KIND,
    StorageClient,
    StorageRecorder,
    classify_status,
    outbox_path,
)
from sonalyze_suite.launcher import Suite, SuiteConfig


def entry(kind: str = "device", payload: dict[str, Any] | None = None, **extra: Any) -> OutboxEntry:
    return OutboxEntry(1, kind, "k", payload or {"device_id": "d"}, extra.get("request_id"), extra.get("device_id"),
                       0.0, 0)  # fmt: skip


class TestClassifyStatus:
    @pytest.mark.parametrize(
        "status,outcome",
        [
            (200, DeliveryOutcome.DELIVERED), (201, DeliveryOutcome.DELIVERED),
            (409, DeliveryOutcome.CONFLICT),
            (500, DeliveryOutcome.RETRY), (502, DeliveryOutcome.RETRY), (503, DeliveryOutcome.RETRY),
            (429, DeliveryOutcome.RETRY), (408, DeliveryOutcome.RETRY), (401, DeliveryOutcome.RETRY),
            (404, DeliveryOutcome.RETRY),
            (400, DeliveryOutcome.REJECTED), (413, DeliveryOutcome.REJECTED), (422, DeliveryOutcome.REJECTED),
        ],
    )  # fmt: skip
    def test_each_status_maps_to_its_outcome(self, status: int, outcome: DeliveryOutcome) -> None:
        assert classify_status(status) is outcome


class TestDeliver:
    async def test_posts_the_payload_to_the_kinds_route_with_token_and_ids(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(201, json={})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = StorageClient("http://storage/", http, token="secret")
            result = await client.deliver(entry("measurement", {"job_id": "j"}, request_id="r1", device_id="p1"))
        assert result.outcome is DeliveryOutcome.DELIVERED
        request = seen[0]
        assert (request.method, str(request.url)) == ("POST", "http://storage/v1/measurements")
        assert json.loads(request.content) == {"job_id": "j"}
        assert request.headers["x-internal-token"] == "secret"
        assert (request.headers["x-request-id"], request.headers["x-device-id"]) == ("r1", "p1")

    @pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
    async def test_a_transport_failure_is_a_retry(self, error: Exception) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            result = await StorageClient("http://storage", http).deliver(entry())
        assert result.outcome is DeliveryOutcome.RETRY

    async def test_a_refusal_carries_the_status_and_body(self) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(422, text="bad"))) as http:
            result = await StorageClient("http://storage", http).deliver(entry())
        assert result == Delivery(DeliveryOutcome.REJECTED, "HTTP 422: bad")

    async def test_an_unknown_kind_is_rejected_without_a_request(self) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as http:
            result = await StorageClient("http://storage", http).deliver(entry("spaceship"))
        assert result.outcome is DeliveryOutcome.REJECTED


class TestJsonable:
    def test_datetimes_become_utc_iso_text(self) -> None:
        paris = timezone(timedelta(hours=1))
        assert jsonable(datetime(2026, 1, 1, 12, tzinfo=paris)) == "2026-01-01T11:00:00+00:00"
        assert jsonable(datetime(2026, 1, 1, 12)) == "2026-01-01T12:00:00+00:00"

    def test_non_finite_numbers_become_null_at_any_depth(self) -> None:
        value = {"a": float("nan"), "b": [1.5, float("inf")], "c": (1, 2)}
        assert jsonable(value) == {"a": None, "b": [1.5, None], "c": [1, 2]}


class RecordingTarget:
    def __init__(self) -> None:
        self.entries: list[OutboxEntry] = []

    async def __call__(self, item: OutboxEntry) -> Delivery:
        self.entries.append(item)
        return Delivery(DeliveryOutcome.DELIVERED)


class TestRecorderPayloads:
    @pytest.fixture
    async def recorded(self, tmp_path: Path) -> AsyncIterator[tuple[StorageRecorder, RecordingTarget]]:
        target = RecordingTarget()
        recorder = StorageRecorder(await Outbox.open(tmp_path / "r.sqlite3", target))
        yield recorder, target
        await recorder.aclose()

    async def test_each_method_queues_its_kind_keyed_by_the_natural_key(
        self, recorded: tuple[StorageRecorder, RecordingTarget]
    ) -> None:
        recorder, target = recorded
        at = datetime(2026, 1, 1, tzinfo=UTC)
        assert await recorder.device_seen("p1", at)
        assert await recorder.lobby("L1", code="ABC123", status="open")
        assert await recorder.participant("L1", "p1", role="speaker")
        assert await recorder.measurement("j1", "u.wav", sample_rate_hz=48000, duration_s=float("nan"))
        assert await recorder.analysis_output("j1", "u.wav", "run-1", metrics={"rt60_s": 0.5})
        assert await recorder.simulation_job("s1", status="done", request={"room": {}})
        assert await recorder.simulation_result("s1:0", "s1", metrics={"sti": 0.6})
        assert await recorder.devices_seen({"p1": (at, at), "p2": (at, at)})
        assert await recorder.devices_seen({})  # nothing to write: nothing queued
        assert await recorder.outbox.flush(5.0)
        got = [(e.kind, e.key, e.payload) for e in target.entries]
        assert got == [
            ("device", "p1", {"device_id": "p1", "first_seen_at": "2026-01-01T00:00:00+00:00",
                              "last_seen_at": "2026-01-01T00:00:00+00:00"}),
            ("lobby", "L1", {"lobby_id": "L1", "code": "ABC123", "status": "open"}),
            ("participant", "L1/p1", {"lobby_id": "L1", "device_id": "p1", "role": "speaker"}),
            ("measurement", "j1/u.wav", {"job_id": "j1", "upload_name": "u.wav", "sample_rate_hz": 48000,
                                         "duration_s": None}),
            ("analysis_output", "j1/u.wav/run-1", {"job_id": "j1", "upload_name": "u.wav", "analysis_run": "run-1",
                                                   "status": "ok", "metrics": {"rt60_s": 0.5}}),
            ("simulation_job", "s1", {"id": "s1", "status": "done", "request": {"room": {}}}),
            ("simulation_result", "s1:0", {"id": "s1:0", "job_id": "s1", "metrics": {"sti": 0.6}}),
            ("device_batch", "2 devices from p1", {"devices": [
                {"device_id": "p1", "first_seen_at": "2026-01-01T00:00:00+00:00",
                 "last_seen_at": "2026-01-01T00:00:00+00:00"},
                {"device_id": "p2", "first_seen_at": "2026-01-01T00:00:00+00:00",
                 "last_seen_at": "2026-01-01T00:00:00+00:00"},
            ]}),
        ]  # fmt: skip
        assert {e.kind for e in target.entries} == set(PATH_BY_KIND)

    async def test_a_broken_local_queue_answers_false_instead_of_raising(
        self, recorded: tuple[StorageRecorder, RecordingTarget]
    ) -> None:
        recorder, _ = recorded
        await recorder.outbox.aclose()
        assert await recorder.device_seen("p1") is False

    async def test_a_background_write_is_queued_before_close_returns(self, tmp_path: Path) -> None:
        target = RecordingTarget()
        recorder = StorageRecorder(await Outbox.open(tmp_path / "bg.sqlite3", target))
        recorder.in_background(recorder.device_seen("p9"))
        await recorder.aclose(drain_timeout_s=5.0)
        assert [e.key for e in target.entries] == ["p9"]

    async def test_open_uses_one_file_per_service_in_the_outbox_dir(self, tmp_path: Path) -> None:
        recorder = await StorageRecorder.open("lobby", storage_url="http://127.0.0.1:9", outbox_dir=tmp_path / "ob")
        try:
            expected = tmp_path / "ob" / "lobby.outbox.sqlite3"
            assert recorder.outbox.path == outbox_path(tmp_path / "ob", "lobby") == expected
            assert await recorder.status() == {"pending": 0, "dead": 0}
        finally:
            await recorder.aclose(drain_timeout_s=0)


# --- with a real storage process --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def storage_suite(
    make_database_url: Callable[[str], Awaitable[str]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    state_dir = tmp_path_factory.mktemp("outbox_e2e")
    config = SuiteConfig.on_free_ports(
        data_dir=state_dir / "data",
        state_dir=state_dir,
        services=("storage",),
        storage_database_url=await make_database_url("storage_outbox"),
        log_level="WARNING",
    )
    suite = Suite(config, log_dir=state_dir / "logs")
    await asyncio.to_thread(suite.start)
    try:
        yield suite
    finally:
        await asyncio.to_thread(suite.stop)


async def record_a_measurement(recorder: StorageRecorder, run: str) -> dict[str, int]:
    """What one measurement writes across the services: 2 speakers x 3 microphones, analysed once."""
    lobby_id, job_id = f"lobby-{run}", f"job-{run}"
    speakers, mics = [f"spk-{run}-{n}" for n in range(2)], [f"mic-{run}-{n}" for n in range(3)]
    now = datetime.now(UTC)
    for device in speakers + mics:  # gateway: connected
        await recorder.device_seen(device, now)
    await recorder.lobby(lobby_id, code="ABC123", admin_device_id=speakers[0], status="open", opened_at=now)
    for device in speakers + mics:  # lobby: joined, then roles assigned (same key again)
        await recorder.participant(lobby_id, device, joined_at=now)
    for n, device in enumerate(speakers):
        await recorder.participant(lobby_id, device, role="speaker", role_slot_id=f"speaker_{n + 1}")
    for n, device in enumerate(mics):
        await recorder.participant(lobby_id, device, role="microphone", role_slot_id=f"mic_{n + 1}")
    for s in range(2):  # measurement: every upload, then every analysis output
        for m, device in enumerate(mics):
            await recorder.measurement(job_id, f"s{s}_m{m}.wav", lobby_id=lobby_id, device_id=device,
                                       speaker_slot_id=f"speaker_{s + 1}", mic_slot_id=f"mic_{m + 1}",
                                       sample_rate_hz=48000, duration_s=12.5, size_bytes=1_200_000)  # fmt: skip
    for s in range(2):
        for m in range(3):
            await recorder.analysis_output(job_id, f"s{s}_m{m}.wav", "run-1", metrics={"broadband": {"rt60_s": 0.6}},
                                           quality={"drift_ppm": 3.0})  # fmt: skip
    await recorder.lobby(lobby_id, status="closed", closed_at=datetime.now(UTC))
    for device in speakers + mics:  # gateway: disconnected
        await recorder.device_seen(device)
    await recorder.simulation_job(f"sim-{run}", status="done", method="ism", request={"room": {"type": "shoebox"}})
    for n in range(2):
        await recorder.simulation_result(f"sim-{run}:{n}", f"sim-{run}", source_id="s1", microphone_id=f"m{n}",
                                         metrics={"rt60_s": 0.5})  # fmt: skip
    return {"device": 5, "lobby": 1, "participant": 5, "measurement": 6, "analysis_output": 6,
            "simulation_job": 1, "simulation_result": 2}  # fmt: skip


async def stored(client: StorageClient, run: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "device": [d for d in await client.list_all("device") if d["device_id"].split("-")[1] == run],
        "lobby": await client.list_all("lobby", lobby_id=f"lobby-{run}"),
        "participant": await client.list_all("participant", lobby_id=f"lobby-{run}"),
        "measurement": await client.list_all("measurement", job_id=f"job-{run}"),
        "analysis_output": await client.list_all("analysis_output", job_id=f"job-{run}"),
        "simulation_job": [j for j in await client.list_all("simulation_job") if j["id"] == f"sim-{run}"],
        "simulation_result": await client.list_all("simulation_result", job_id=f"sim-{run}"),
    }


FAST_RETRY = Backoff(initial_s=0.05, max_s=0.5)


class TestWithStorageStopped:
    async def test_every_record_arrives_exactly_once_after_storage_comes_back(
        self, storage_suite: Suite, tmp_path: Path
    ) -> None:
        run = uuid.uuid4().hex[:8]
        storage_url = storage_suite.config.url("storage")
        await asyncio.to_thread(storage_suite.stop_service, "storage")
        recorder = await StorageRecorder.open("measurement", storage_url=storage_url, outbox_dir=tmp_path,
                                              backoff=FAST_RETRY)  # fmt: skip
        try:
            with bind_context(request_id=f"req-{run}"):
                expected = await record_a_measurement(recorder, run)
            await asyncio.sleep(0.5)  # a few failed attempts while storage is down
            status = await recorder.status()
            assert status == {"pending": sum(expected.values()) + 5 + 5 + 1, "dead": 0}  # repeats included

            await asyncio.to_thread(storage_suite.start_service, "storage")
            await asyncio.to_thread(storage_suite.wait_healthy, ["storage"])
            assert await recorder.outbox.flush(30.0)
            assert await recorder.status() == {"pending": 0, "dead": 0}
        finally:
            await recorder.aclose()

        async with httpx.AsyncClient() as http:
            records = await stored(StorageClient(storage_url, http), run)
        assert {kind: len(items) for kind, items in records.items()} == expected
        assert records["lobby"][0]["status"] == "closed" and records["lobby"][0]["code"] == "ABC123"
        assert sorted(p["role"] for p in records["participant"]) == ["microphone"] * 3 + ["speaker"] * 2
        assert all(p["joined_at"] for p in records["participant"])
        assert all(d["last_seen_at"] >= d["first_seen_at"] for d in records["device"])
        assert {o["measurement_id"] for o in records["analysis_output"]} == {m["id"] for m in records["measurement"]}

    async def test_delivering_everything_a_second_time_changes_nothing(
        self, storage_suite: Suite, tmp_path: Path
    ) -> None:
        run = uuid.uuid4().hex[:8]
        storage_url = storage_suite.config.url("storage")
        recorder = await StorageRecorder.open("lobby", storage_url=storage_url, outbox_dir=tmp_path, backoff=FAST_RETRY)
        try:
            expected = await record_a_measurement(recorder, run)
            assert await recorder.outbox.flush(30.0)
            async with httpx.AsyncClient() as http:
                first = await stored(StorageClient(storage_url, http), run)
                await record_a_measurement(recorder, run)  # as if every entry were redelivered
                assert await recorder.outbox.flush(30.0)
                second = await stored(StorageClient(storage_url, http), run)
        finally:
            await recorder.aclose()
        assert {kind: len(items) for kind, items in second.items()} == expected
        for kind in expected:
            assert [r["id"] for r in second[kind]] == [r["id"] for r in first[kind]], kind
