"""Drain in one process: while draining, ``/ws`` is refused with 503 before the handshake and
``/healthz`` answers 503 ``draining``; open sockets are closed with 1012."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from sonalyze_gateway.drain import CLOSE_SERVICE_RESTART, DrainState, drain
from sonalyze_gateway.main import create_app
from sonalyze_gateway.settings import Settings

# starlette asks for httpx2 in its test client; the socket handshake is what is tested here
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_draining_gateway_refuses_sockets_with_503_and_says_so_on_healthz() -> None:
    app = create_app(Settings(internal_port=0, lobby_url="http://127.0.0.1:9"))
    with TestClient(app) as client:
        with client.websocket_connect("/ws?device_id=before") as ws:
            assert ws.receive_json()["event"] == "gateway.identified"
        assert client.get("/healthz").json()["status"] == "ok"
        app.state.gateway.drain.draining = True
        with pytest.raises(WebSocketDenialResponse) as refused:
            with client.websocket_connect("/ws?device_id=after"):
                pass
        health = client.get("/healthz")
    assert refused.value.status_code == 503
    assert refused.value.json()["error"]["code"] == "service_unavailable"
    assert health.status_code == 503 and health.json()["status"] == "draining"


class _Socket:
    def __init__(self) -> None:
        self.closed_with: list[int] = []

    async def send(self, frame: str) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        self.closed_with.append(code)


async def test_drain_closes_every_socket_with_1012_then_settles() -> None:
    from sonalyze_gateway.connection_manager import Connection, ConnectionManager

    manager = ConnectionManager()
    sockets = [_Socket() for _ in range(3)]
    for i, sock in enumerate(sockets):
        connection = Connection(i, sock.send, sock.close, 8)
        connection.start()
        manager.add(connection)
    settled: list[bool] = []

    async def settle() -> None:
        settled.append(state.draining)

    state = DrainState()
    assert await drain(state, manager, settle) == 3
    assert [s.closed_with for s in sockets] == [[CLOSE_SERVICE_RESTART]] * 3
    assert state.draining and settled == [True]
