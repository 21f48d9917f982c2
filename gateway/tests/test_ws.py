"""``/ws`` against the real gateway process, with a real WebSocket client and stub backends."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.e2e


def new_device() -> str:
    return "dev-" + uuid.uuid4().hex[:10]


class TestIdentify:
    async def test_query_parameter_identifies_the_socket(self, gateway: Any, stubs: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws:
            frame = await kit.request(ws, "lobby.create", {}, "r1")
        assert frame["type"] == "response"
        assert frame["data"]["device_id"] == device

    async def test_identify_message_answers_the_device_id(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway) as ws:
            frame = await kit.request(ws, "identify", {"device_id": device}, "id-1")
            routed = await kit.request(ws, "lobby.get", {}, "r2")
        assert frame["type"] == "response" and frame["request_id"] == "id-1"
        assert frame["data"]["device_id"] == device and frame["data"]["device_auth"] == "claim"
        assert frame["data"]["device_token"]
        assert routed["data"]["device_id"] == device

    async def test_every_event_before_identify_is_not_identified(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway) as ws:
            for event in ("lobby.create", "simulation.run", "no.such.event"):
                frame = await kit.request(ws, event, {}, f"r-{event}")
                assert frame["type"] == "error"
                assert frame["event"] == event
                assert frame["error"]["code"] == "not_identified"
            ok = await kit.request(ws, "identify", {"device_id": new_device()}, "late")
        assert ok["type"] == "response"

    async def test_identify_without_device_id_is_bad_request(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway) as ws:
            frame = await kit.request(ws, "identify", {}, 1)
        assert frame["error"]["code"] == "bad_request"
        assert "device_id" in frame["error"]["message"]
        assert frame["request_id"] == 1

    async def test_reidentifying_as_another_device_is_refused(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws:
            same = await kit.request(ws, "identify", {"device_id": device}, "a")
            other = await kit.request(ws, "identify", {"device_id": new_device()}, "b")
        assert same["type"] == "response"
        assert other["error"]["code"] == "invalid_state"


class TestBadInputKeepsTheSocketOpen:
    @pytest.mark.parametrize(
        ("raw", "event", "request_id", "fragment"),
        [
            ("{not json", None, None, "not valid JSON"),
            ("[1, 2, 3]", None, None, "JSON object"),
            ('"just a string"', None, None, "JSON object"),
            ('{"request_id": "m1", "data": {}}', None, "m1", "'event'"),
            ('{"event": 42, "request_id": "m2"}', None, "m2", "'event' must be"),
            ('{"event": "lobby.join", "request_id": "m3", "data": [1]}', "lobby.join", "m3", "'data' must be"),
            ('{"event": "lobby.join", "request_id": "m4", "data": "x"}', "lobby.join", "m4", "'data' must be"),
        ],
    )
    async def test_malformed_message_gets_bad_request(
        self, gateway: Any, kit: Any, raw: str, event: str | None, request_id: str | None, fragment: str
    ) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(raw)
            frame = await kit.recv_frame(ws)
            after = await kit.request(ws, "lobby.get", {}, "after")
        assert frame["type"] == "error"
        assert (frame["event"], frame["request_id"]) == (event, request_id)
        assert frame["error"]["code"] == "bad_request"
        assert fragment in frame["error"]["message"]
        assert after["type"] == "response"

    async def test_binary_json_is_read_like_text(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(b'{"event": "lobby.get", "request_id": "bin"}')
            frame = await kit.recv_frame(ws)
        assert (frame["type"], frame["request_id"]) == ("response", "bin")

    async def test_oversize_message_is_message_too_large(self, gateway: Any, kit: Any) -> None:
        big = orjson.dumps({"event": "lobby.get", "request_id": "big", "data": {"blob": "x" * 70_000}}).decode()
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(big)
            frame = await kit.recv_frame(ws)
            after = await kit.request(ws, "lobby.get", {}, "after")
        assert frame["type"] == "error"
        assert frame["error"]["code"] == "message_too_large"
        assert "65536" in frame["error"]["message"]
        assert after["type"] == "response"

    async def test_a_frame_far_over_the_limit_is_refused_before_it_is_buffered(self, gateway: Any, kit: Any) -> None:
        """uvicorn's own limit is 4 x MAX_MESSAGE_BYTES: up to it an error frame, beyond it close 1009 at
        once; ten 15 MB frames no longer grow the gateway by their size (issue 14, defect 5)."""
        gateway.reset_peak_rss()
        rss_before = gateway.peak_rss_bytes()
        four_x = orjson.dumps({"event": "lobby.get", "request_id": "4x", "data": {"blob": "x" * 250_000}}).decode()
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(four_x)
            frame = await kit.recv_frame(ws)
            assert frame["error"]["code"] == "message_too_large"
            assert (await kit.request(ws, "lobby.get", {}, "still-open"))["type"] == "response"
        huge = "x" * (15 * 1024 * 1024)
        for _ in range(10):
            async with kit.open_socket(gateway, new_device()) as ws:
                try:
                    await ws.send(huge)
                    await kit.recv_frame(ws)
                except ConnectionClosed:
                    pass
                assert ws.close_code == 1009, ws.close_code
        assert gateway.peak_rss_bytes() - rss_before < 40 * 1024 * 1024

    async def test_multibyte_text_is_measured_in_bytes(self, gateway: Any, kit: Any) -> None:
        # 30 000 characters but 90 000 bytes in UTF-8
        big = orjson.dumps({"event": "lobby.get", "request_id": "mb", "data": {"blob": "€" * 30_000}}).decode()
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(big)
            frame = await kit.recv_frame(ws)
        assert frame["error"]["code"] == "message_too_large"

    async def test_burst_over_the_bucket_is_rate_limited_with_retry_after(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            for i in range(30):
                await ws.send(orjson.dumps({"event": "no.such", "request_id": i}).decode())
            frames = [await kit.recv_frame(ws) for _ in range(30)]
            await asyncio.sleep(0.3)  # 10/s refills at least 2 tokens
            later = await kit.request(ws, "lobby.get", {}, "later")
        limited = [f for f in frames if f["error"]["code"] == "rate_limited"]
        served = [f for f in frames if f["error"]["code"] == "unknown_event"]
        assert 20 <= len(served) <= 22  # burst 20, plus what refilled while sending
        assert len(limited) == 30 - len(served)
        first = limited[0]
        assert first["event"] == "no.such"
        assert isinstance(first["request_id"], int)
        assert 1 <= first["error"]["retry_after_ms"] <= 100
        assert later["type"] == "response"


class TestRouting:
    @pytest.mark.parametrize(
        ("event", "service"),
        [
            ("lobby.create", "lobby"),
            ("role.assign", "lobby"),
            ("measurement.create_session", "lobby"),
            ("measurement.recording_uploaded", "lobby"),
            ("measurement.error", "lobby"),
            ("measurement.create_job", "measurement"),
            ("measurement.get_job", "measurement"),
            ("analysis.run", "measurement"),
            ("simulation.run", "simulation"),
        ],
    )
    async def test_event_reaches_its_service_with_ids_and_token(
        self, gateway: Any, kit: Any, event: str, service: str
    ) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws:
            frame = await kit.request(ws, event, {"k": 1}, f"req-{event}")
        assert frame["type"] == "response"
        assert (frame["event"], frame["request_id"]) == (event, f"req-{event}")
        call = frame["data"]
        assert call["service"] == service
        assert (call["event"], call["request_id"], call["device_id"], call["data"]) == (
            event,
            f"req-{event}",
            device,
            {"k": 1},
        )
        assert call["token_ok"] is True
        assert (call["x_request_id"], call["x_device_id"]) == (f"req-{event}", device)

    async def test_unknown_event_is_answered_by_the_gateway(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            frame = await kit.request(ws, "measurement.teleport", {}, "u1")
        assert frame == {
            "type": "error",
            "event": "measurement.teleport",
            "request_id": "u1",
            "error": {"code": "unknown_event", "message": "unknown event 'measurement.teleport'"},
        }

    async def test_service_error_reply_becomes_an_error_frame(self, gateway: Any, kit: Any) -> None:
        error = {"code": "not_found", "message": "no lobby ABC123", "lobby_code": "ABC123"}
        async with kit.open_socket(gateway, new_device()) as ws:
            frame = await kit.request(ws, "lobby.join", {"reply_error": error}, "e1")
        assert frame == {"type": "error", "event": "lobby.join", "request_id": "e1", "error": error}

    async def test_service_answering_500_is_internal_error(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            frame = await kit.request(ws, "lobby.get", {"http_status": 500}, "e2")
        assert frame["error"]["code"] == "internal_error"

    async def test_backend_slower_than_the_timeout_is_timeout(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            started = time.monotonic()
            frame = await kit.request(ws, "simulation.run", {"sleep_s": 3}, "slow")
            elapsed_s = time.monotonic() - started
        assert frame["error"]["code"] == "timeout"
        assert 0.9 <= elapsed_s < 2.5  # HTTP_TIMEOUT_SECONDS=1.0

    async def test_backend_down_is_service_unavailable(self, down_gateway: Any, kit: Any) -> None:
        async with kit.open_socket(down_gateway, new_device()) as ws:
            frames = [await kit.request(ws, e, {}, e) for e in ("lobby.create", "analysis.run", "simulation.run")]
            local = await kit.request(ws, "identify", {}, "still-open")
        assert [f["error"]["code"] for f in frames] == ["service_unavailable"] * 3
        assert local["error"]["code"] == "bad_request"  # the socket still answers

    async def test_slow_request_does_not_block_the_next_on_the_same_socket(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as ws:
            await ws.send(orjson.dumps({"event": "lobby.get", "request_id": "slow", "data": {"sleep_s": 0.7}}))
            started = time.monotonic()
            fast = await kit.request(ws, "lobby.get", {}, "fast")
            fast_s = time.monotonic() - started
            slow = await kit.recv_frame(ws)
        assert fast["type"] == "response" and fast_s < 0.5
        assert (slow["type"], slow["request_id"]) == ("response", "slow")

    async def test_slow_request_does_not_block_other_sockets(self, gateway: Any, kit: Any) -> None:
        async with kit.open_socket(gateway, new_device()) as slow_ws, kit.open_socket(gateway, new_device()) as ws:
            await slow_ws.send(orjson.dumps({"event": "lobby.get", "request_id": "s", "data": {"sleep_s": 0.7}}))
            started = time.monotonic()
            frame = await kit.request(ws, "lobby.get", {}, "other")
            assert time.monotonic() - started < 0.5
            assert frame["type"] == "response"
            assert (await kit.recv_frame(slow_ws))["request_id"] == "s"


class TestLogs:
    async def test_one_line_per_event_with_request_and_device_id(self, gateway: Any, kit: Any) -> None:
        device = new_device()
        async with kit.open_socket(gateway, device) as ws:
            await kit.request(ws, "lobby.get", {}, "log-me")
            await kit.request(ws, "no.such", {}, "log-me-too")
        await asyncio.sleep(0.2)
        lines = gateway.log().splitlines()
        routed = [ln for ln in lines if "request_id=log-me " in ln]
        local = [ln for ln in lines if "request_id=log-me-too " in ln]
        assert len(routed) == 1 and len(local) == 1
        assert f"device_id={device}" in routed[0] and "event=lobby.get" in routed[0] and "outcome=ok" in routed[0]
        assert "outcome=unknown_event" in local[0]

    def test_a_set_token_gives_no_warning_and_a_missing_one_a_loud_one(self, gateway: Any, down_gateway: Any) -> None:
        assert "INTERNAL_AUTH_TOKEN is not set" not in gateway.log()
        warning = [ln for ln in down_gateway.log().splitlines() if "INTERNAL_AUTH_TOKEN is not set" in ln]
        assert len(warning) == 1 and " WARNING " in warning[0]
