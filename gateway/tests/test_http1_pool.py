"""The lean HTTP/1.1 client against small scripted servers on real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from sonalyze_gateway.http1_pool import ConnectionFailed, Http1Pool, ResponseTimeout
from sonalyze_gateway.http_client import EventForwarder
from sonalyze_gateway.router import Target
from sonalyze_protocol.errors import ServiceUnavailable
from sonalyze_suite.launcher import free_port

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"data":{}}'


class ScriptedServer:
    """Answers each request with ``reply(n)`` (bytes, or None to stay silent); counts connections."""

    def __init__(self, reply: Callable[[int], bytes | None]) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.reply(len(self.requests))
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                    if b"Connection: close" in answer:
                        break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ScriptedServer], asyncio.Future[str]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(script: ScriptedServer) -> str:
        port = free_port()
        servers.append(await asyncio.start_server(script.handle, "127.0.0.1", port))
        return f"http://127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def request_for(pool: Http1Pool, body: bytes = b"{}") -> bytes:
    return pool.request_head("/gateway/handle", [("X-Internal-Token", "t")], len(body)) + body


class TestHttp1Pool:
    async def test_posts_and_reuses_one_keep_alive_connection(self, serve) -> None:  # type: ignore[no-untyped-def]
        script = ScriptedServer(lambda n: OK)
        pool = Http1Pool(await serve(script))
        results = [await pool.post(request_for(pool, b'{"n":1}'), 2.0) for _ in range(3)]
        pool.close()
        assert results == [(200, b'{"data":{}}')] * 3
        assert script.connections == 1
        assert script.requests[0].startswith(b"POST /gateway/handle HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"X-Internal-Token: t\r\n" in script.requests[0] and script.requests[0].endswith(b'{"n":1}')

    async def test_chunked_response_is_joined(self, serve) -> None:  # type: ignore[no-untyped-def]
        chunked = (
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        pool = Http1Pool(await serve(ScriptedServer(lambda n: chunked)))
        assert await pool.post(request_for(pool), 2.0) == (503, b"abcde")
        pool.close()

    async def test_connection_close_opens_a_new_connection_next_time(self, serve) -> None:  # type: ignore[no-untyped-def]
        closing = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
        script = ScriptedServer(lambda n: closing)
        pool = Http1Pool(await serve(script))
        for _ in range(2):
            assert (await pool.post(request_for(pool), 2.0))[0] == 200
        pool.close()
        assert script.connections == 2

    async def test_a_5xx_answer_is_never_followed_on_its_connection(self, serve) -> None:  # type: ignore[no-untyped-def]
        """Issue 14: a service that failed on an unhandled error closes that connection a moment later;
        the next event must not be written into it (it failed in the place of someone else's event)."""
        failed = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"
        script = ScriptedServer(lambda n: failed if n == 1 else OK)
        pool = Http1Pool(await serve(script))
        assert await pool.post(request_for(pool), 2.0) == (500, b"{}")
        assert await pool.post(request_for(pool), 2.0) == (200, b'{"data":{}}')
        assert await pool.post(request_for(pool), 2.0) == (200, b'{"data":{}}')
        pool.close()
        assert script.connections == 2  # a fresh one after the 500, kept for the 200s

    async def test_concurrent_posts_use_several_connections(self, serve) -> None:  # type: ignore[no-untyped-def]
        script = ScriptedServer(lambda n: OK)
        pool = Http1Pool(await serve(script))
        results = await asyncio.gather(*(pool.post(request_for(pool), 2.0) for _ in range(5)))
        pool.close()
        assert all(status == 200 for status, _ in results)
        assert script.connections >= 2

    async def test_silent_server_times_out_and_the_connection_is_not_reused(self, serve) -> None:  # type: ignore[no-untyped-def]
        script = ScriptedServer(lambda n: None if n == 1 else OK)
        pool = Http1Pool(await serve(script))
        with pytest.raises(ResponseTimeout):
            await pool.post(request_for(pool), 0.2)
        assert await pool.post(request_for(pool), 2.0) == (200, b'{"data":{}}')
        pool.close()
        assert script.connections == 2

    async def test_nothing_listening_is_connection_failed(self) -> None:
        pool = Http1Pool(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(ConnectionFailed):
            await pool.post(request_for(pool), 2.0)

    async def test_server_closing_mid_response_is_connection_failed(self, serve) -> None:  # type: ignore[no-untyped-def]
        cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly-part"
        pool = Http1Pool(await serve(ScriptedServer(lambda n: cut)))
        with pytest.raises(ConnectionFailed):
            await pool.post(request_for(pool), 2.0)
        pool.close()

    async def test_garbage_response_is_connection_failed(self, serve) -> None:  # type: ignore[no-untyped-def]
        pool = Http1Pool(await serve(ScriptedServer(lambda n: b"NOT HTTP AT ALL\r\n\r\n")))
        with pytest.raises(ConnectionFailed):
            await pool.post(request_for(pool), 2.0)
        pool.close()

    @pytest.mark.parametrize("url", ["https://x:1", "ftp://x", "http://"])
    def test_only_plain_http_urls(self, url: str) -> None:
        with pytest.raises(ValueError):
            Http1Pool(url)


class TestReplicaFailover:
    """``LOBBY_URL`` listing replicas: the next one only when no connection could be made (nothing was sent)."""

    async def test_an_unreachable_replica_is_skipped_and_the_one_that_answered_kept(self, serve) -> None:  # type: ignore[no-untyped-def]

        alive = ScriptedServer(lambda n: OK)
        dead = f"http://127.0.0.1:{free_port()}"
        forwarder = EventForwarder({Target.LOBBY: f"{dead}, {await serve(alive)}/"}, "t", 2.0)
        try:
            assert await forwarder.forward(Target.LOBBY, "lobby.get", "r1", "dev-1", {}) == {}
            assert await forwarder.forward(Target.LOBBY, "lobby.get", "r2", "dev-1", {}) == {}
            assert len(alive.requests) == 2 and alive.connections == 1  # kept on the live one
        finally:
            forwarder.close()

    async def test_a_replica_that_breaks_mid_request_is_not_retried_elsewhere(self, serve) -> None:  # type: ignore[no-untyped-def]

        cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly-part"
        breaking, other = ScriptedServer(lambda n: cut), ScriptedServer(lambda n: OK)
        forwarder = EventForwarder({Target.LOBBY: f"{await serve(breaking)},{await serve(other)}"}, "t", 2.0)
        try:
            with pytest.raises(ServiceUnavailable):
                await forwarder.forward(Target.LOBBY, "measurement.start_speaker", "r1", "dev-1", {})
            assert len(breaking.requests) == 1 and other.requests == []  # it may have been acted on
        finally:
            forwarder.close()

    async def test_no_replica_reachable_is_service_unavailable(self) -> None:

        urls = ",".join(f"http://127.0.0.1:{free_port()}" for _ in range(2))
        forwarder = EventForwarder({Target.LOBBY: urls}, "t", 2.0)
        try:
            with pytest.raises(ServiceUnavailable):
                await forwarder.forward(Target.LOBBY, "lobby.get", "r1", "dev-1", {})
        finally:
            forwarder.close()
