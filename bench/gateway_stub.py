"""A backend for the gateway benchmarks that answers every request at once with ``{"data": {}}``, and every
event of a ``/gateway/handle_batch`` the same way.

Raw asyncio + httptools rather than FastAPI, so its own cost (~10 us a request) does not blur what
the gateway costs. ``python bench/gateway_stub.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import httptools
import orjson

BODY: Final = b'{"data":{}}'
BATCHED_REPLY: Final = b'{"status":200,"reply":' + BODY + b"}"
BATCH_PATH: Final = b"/gateway/handle_batch"


def response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


RESPONSE: Final = response(BODY)


class StubProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url = url
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.url != BATCH_PATH:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            return
        n_events = len(orjson.loads(b"".join(self.body))["events"])
        replies = b'{"replies":[' + b",".join([BATCHED_REPLY] * n_events) + b"]}"
        self.transport.write(response(replies))  # type: ignore[attr-defined]


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
