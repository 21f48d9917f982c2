"""How service replies become frames' data or errors, which request ids travel as headers, and how\npresence notices reach the lobby in batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sonalyze_gateway.http_client import LifecycleNotifier, _loads, _reply_data, header_safe
from sonalyze_gateway.router import Target
from sonalyze_protocol.errors import AppError, ServiceUnavailable


def reply_data(target: Target, status: int, raw: bytes) -> object:
    """What the forwarder makes of a service's raw answer to one event."""
    return _reply_data(target, status, _loads(raw))


class TestReplyData:
    def test_data_reply_gives_its_data(self) -> None:
        assert reply_data(Target.LOBBY, 200, b'{"data": {"code": "ABC234"}}') == {"code": "ABC234"}

    def test_error_reply_raises_that_error_with_extras(self) -> None:
        with pytest.raises(AppError) as info:
            reply_data(Target.LOBBY, 200, b'{"error": {"code": "conflict", "message": "taken", "slot": "s1"}}')
        assert info.value.to_error() == {"code": "conflict", "message": "taken", "slot": "s1"}

    def test_unknown_error_code_becomes_internal_error(self) -> None:
        with pytest.raises(AppError) as info:
            reply_data(Target.LOBBY, 200, b'{"error": {"code": "weird", "message": "?"}}')
        assert info.value.code == "internal_error"

    @pytest.mark.parametrize("raw", [b"not json", b"[1]", b'"x"'])
    def test_a_reply_of_the_wrong_shape_is_internal_error(self, raw: bytes) -> None:
        with pytest.raises(AppError) as info:
            reply_data(Target.SIMULATION, 200, raw)
        assert info.value.code == "internal_error"

    @pytest.mark.parametrize(
        ("status", "code"),
        [(401, "unauthorized"), (404, "not_found"), (500, "internal_error"), (503, "service_unavailable")],
    )
    def test_transport_statuses_map_to_codes(self, status: int, code: str) -> None:
        with pytest.raises(AppError) as info:
            reply_data(Target.MEASUREMENT, status, b"<html>oops</html>")
        assert info.value.code == code


class TestHeaderSafe:
    @pytest.mark.parametrize(("value", "expected"), [("req-1", "req-1"), (7, "7"), (None, None)])
    def test_plain_ids_pass(self, value: object, expected: str | None) -> None:
        assert header_safe(value) == expected  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "é", "x" * 129])
    def test_ids_unfit_for_a_header_are_left_out(self, value: str) -> None:
        assert header_safe(value) is None


class HeldLobby:
    """A forwarder whose lobby answers only when released; records every batch it was sent."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bool]]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def forward(self, target: Target, event: str, request_id: Any, device_id: str, data: dict[str, Any]) -> Any:
        assert (target, event, request_id, device_id) == (Target.LOBBY, "device.presence", None, "gateway")
        self.batches.append([(c["device_id"], c["connected"]) for c in data["changes"]])
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ServiceUnavailable("lobby is unavailable")
        return {"applied": len(data["changes"])}


class TestLifecycleNotifier:
    async def test_notices_given_while_a_batch_is_out_go_together_in_order(self) -> None:
        lobby = HeldLobby()
        notifier = LifecycleNotifier(lobby, batch_max=150)  # type: ignore[arg-type]
        notifier.notify("first", "device.connected")
        await asyncio.sleep(0.01)
        assert lobby.batches == [[("first", True)]]  # a lone notice went out at once
        for i in range(200):
            notifier.notify(f"d{i}", "device.connected")
        notifier.notify("d0", "device.disconnected")
        assert notifier.pending == 201
        lobby.release.set()
        await notifier.drain()
        assert [len(b) for b in lobby.batches] == [1, 150, 51]
        sent = [change for batch in lobby.batches[1:] for change in batch]
        assert sent == [(f"d{i}", True) for i in range(200)] + [("d0", False)]
        assert notifier.pending == 0

    async def test_a_failed_batch_is_logged_and_the_next_ones_still_go(self, caplog: Any) -> None:
        lobby = HeldLobby()
        lobby.fail_next = True
        lobby.release.set()
        notifier = LifecycleNotifier(lobby)  # type: ignore[arg-type]
        notifier.notify("a", "device.connected")
        await notifier.drain()
        notifier.notify("a", "device.disconnected")
        await notifier.drain()
        assert lobby.batches == [[("a", True)], [("a", False)]]
        assert "1 presence notices not delivered to lobby: service_unavailable" in caplog.text
