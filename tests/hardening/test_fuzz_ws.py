"""hypothesis over the WebSocket protocol, against the real suite: the envelope and every event's data.

Every message gets exactly one reply, a ``response`` or an ``error`` frame in the envelope, never
``internal_error``, and the socket stays open for the next one.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from sonalyze_lobby.gateway_handler import HANDLERS as LOBBY_HANDLERS
from sonalyze_measurement.gateway_handler import HANDLERS as MEASUREMENT_HANDLERS
from sonalyze_simulation.gateway_handler import HANDLERS as SIMULATION_HANDLERS
from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e

ENVELOPE_EXAMPLES = 150
EVENT_EXAMPLES = 250
REPLY_TIMEOUT_S = 30.0
TABLES = (LOBBY_HANDLERS, MEASUREMENT_HANDLERS, SIMULATION_HANDLERS)
# the lifecycle notices only the gateway may send are not for clients
EVENTS = sorted(e for table in TABLES for e in table.events if not e.startswith("device."))
FIELDS = sorted({name for table in TABLES for h in table._handlers.values() for name in h.model.model_fields})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "ABCD", "speaker_1", "mic_1", "x" * 200, "0" * 32, "../../etc/passwd"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip
event_data = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
raw_frames = st.one_of(
    st.text(max_size=200),
    json_values.map(lambda v: json.dumps(v)),
    st.builds(lambda e, r, d: json.dumps({"event": e, "request_id": r, "data": d}),
              st.one_of(st.sampled_from(EVENTS), st.text(max_size=30), json_values),
              st.one_of(st.none(), st.integers(), st.text(max_size=20), json_values), json_values),
    st.sampled_from(['{"event": "lobby.get", "data": {"x": NaN}}', '{"event": "x", "data": {"s": "\\ud800"}}',
                     '{"event": "lobby.get", "data": ' + "[" * 300 + "]" * 300 + "}", "\\u0000", "{"]),
)  # fmt: skip

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


class Socket:
    """One identified socket for the whole run (reopened if the server ever closes it, which fails the test)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None

    def open(self) -> ClientConnection:
        if self.ws is None:
            self.ws = connect(self.url, max_size=None, open_timeout=10).__enter__()
            self.ws.send('{"event": "identify", "request_id": "id", "data": {"device_id": "fuzz-phone"}}')
            assert self.reply("id")["type"] == "response"
        return self.ws

    def reply(self, request_id: Any) -> dict[str, Any]:
        """The next response or error frame (pushes skipped)."""
        assert self.ws is not None
        while True:
            frame = orjson.loads(self.ws.recv(timeout=REPLY_TIMEOUT_S))
            if frame["type"] in ("response", "error"):
                return frame

    def exchange(self, raw: str) -> dict[str, Any]:
        self.open().send(raw)
        return self.reply(None)


@pytest.fixture(scope="module")
def socket(hard_suite: Suite) -> Any:
    sock = Socket(hard_suite.config.url("gateway").replace("http://", "ws://") + "/ws")
    yield sock
    if sock.ws is not None:
        sock.ws.close()


def judge(frame: dict[str, Any], target: str, counts: Any, count: Any) -> None:
    code = frame["error"]["code"] if frame["type"] == "error" else None
    count(counts, target, None, code)
    if frame["type"] == "error":
        assert set(frame) == {"type", "event", "request_id", "error"}, frame
        assert frame["error"]["code"] and isinstance(frame["error"]["message"], str), frame
        assert code != "internal_error", frame
    else:
        assert set(frame) == {"type", "event", "request_id", "data"}, frame


@given(raw=raw_frames)
@settings(FUZZ, max_examples=ENVELOPE_EXAMPLES)
def test_any_frame_gets_one_clear_reply(socket: Socket, raw: str, fuzz_counts: Any, fuzz_count: Any) -> None:
    judge(socket.exchange(raw), "ws envelope", fuzz_counts, fuzz_count)


@given(event=st.sampled_from(EVENTS), data=event_data, request_id=st.integers(0, 10**6))
@settings(FUZZ, max_examples=EVENT_EXAMPLES)
def test_any_data_of_every_event_gets_one_clear_reply(
    socket: Socket, event: str, data: dict[str, Any], request_id: int, fuzz_counts: Any, fuzz_count: Any
) -> None:
    raw = json.dumps({"event": event, "request_id": request_id, "data": data})
    frame = socket.exchange(raw)
    assert frame["request_id"] == request_id, frame
    judge(frame, "ws events", fuzz_counts, fuzz_count)


def test_every_event_was_tried() -> None:
    """The event list comes from the services' own handler tables, so a new event is fuzzed too."""
    assert {"lobby.create", "measurement.create_session", "analysis.run", "simulation.run"} <= set(EVENTS)
