"""The client side of bench/gateway_load.py: one process driving many paced WebSocket clients.

The parent sends commands over a pipe (``connect``, ``load``, ``events``, ``close``, ``quit``) and
gets figures back. Latency is measured inside this process (send -> matching reply, perf_counter);
broadcast arrival in wall-clock time, so the parent can compare it with when it posted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection, connect

DRAIN_GRACE_S: Final = 3.0
CONNECT_TIMEOUT_S: Final = 20.0


class Client:
    __slots__ = ("device_id", "pending", "reader", "ws")

    def __init__(self, ws: ClientConnection, device_id: str) -> None:
        self.ws = ws
        self.device_id = device_id
        self.pending: dict[int, float] = {}
        self.reader: asyncio.Task[None] | None = None


class Worker:
    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.clients: list[Client] = []
        self.ids = itertools.count(1)
        self.latencies_ms: list[float] = []  # answers that count as served (responses, `answer_codes` errors)
        self.answer_ms: list[float] = []  # every answer, errors included
        self.answer_codes: frozenset[str] = frozenset()
        self.error_codes: Counter[str] = Counter()
        self.events: defaultdict[str, list[float]] = defaultdict(list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, self.pipe.recv)
            if command["op"] == "quit":
                await self.op_close()
                self.pipe.send({})
                return
            result = await getattr(self, "op_" + command["op"])(**command.get("args", {}))
            self.pipe.send(result)

    async def _reader(self, client: Client) -> None:
        perf = time.perf_counter
        wall = time.time
        pending = client.pending
        try:
            async for raw in client.ws:
                now = perf()
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "event":
                    self.events[frame["event"]].append(wall())
                    continue
                sent = pending.pop(frame.get("request_id"), None)
                if sent is None:
                    continue
                latency_ms = (now - sent) * 1000.0
                self.answer_ms.append(latency_ms)
                if kind == "error" and frame["error"]["code"] not in self.answer_codes:
                    self.error_codes[frame["error"]["code"]] += 1
                else:
                    self.latencies_ms.append(latency_ms)
        except Exception:
            pass

    async def _open(self, url: str, device_id: str) -> Client | None:
        try:
            ws = await connect(
                url, compression=None, ping_interval=None, open_timeout=CONNECT_TIMEOUT_S, max_queue=None
            )
            await ws.send(identify_message(0, device_id))
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S))
            while reply.get("type") == "event":  # the gateway's connection notices come first
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S))
            if reply.get("type") == "error":
                await ws.close()
                return None
        except Exception:
            return None
        client = Client(ws, device_id)
        client.reader = asyncio.get_running_loop().create_task(self._reader(client))
        return client

    async def op_connect(self, url: str, device_ids: list[str], start_at_s: float) -> dict[str, Any]:
        """Open one socket per device and identify it; all at once from ``start_at_s`` (wall clock)."""
        await asyncio.sleep(max(0.0, start_at_s - time.time()))
        started_s = time.time()
        opened = await asyncio.gather(*(self._open(url, d) for d in device_ids))
        finished_s = time.time()
        self.clients = [c for c in opened if c is not None]
        return {"started_s": started_s, "finished_s": finished_s, "failed": len(device_ids) - len(self.clients)}

    async def op_load(
        self,
        kind: str,
        rate_hz: float,
        duration_s: float,
        start_at_s: float,
        routed: str = "",
        answer_codes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Every client sends ``kind`` at ``rate_hz``: "local" = identify, "routed" = the message ``routed``
        (``%d`` = request id). Error answers with a code in ``answer_codes`` count as served."""
        loop = asyncio.get_running_loop()
        self.latencies_ms = []
        self.answer_ms = []
        self.answer_codes = frozenset(answer_codes)
        self.error_codes = Counter()
        start = loop.time() + (start_at_s - time.time())
        end = start + duration_s
        period_s = 1.0 / rate_hz
        n = max(1, len(self.clients))
        template = routed or ROUTED_MESSAGE
        sent = await asyncio.gather(
            *(
                self._pace(c, kind, template, period_s, start + period_s * i / n, end)
                for i, c in enumerate(self.clients)
            )
        )
        deadline = loop.time() + DRAIN_GRACE_S
        while any(c.pending for c in self.clients) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        lost = sum(len(c.pending) for c in self.clients)
        for c in self.clients:
            c.pending.clear()
        return {
            "latencies_ms": self.latencies_ms,
            "answer_ms": self.answer_ms,
            "errors": dict(self.error_codes),
            "lost": lost,
            "sent": sum(sent),
            "closed": sum(1 for c in self.clients if c.ws.close_code is not None),
        }

    async def _pace(self, client: Client, kind: str, template: str, period_s: float, first: float, end: float) -> int:
        loop = asyncio.get_running_loop()
        perf = time.perf_counter
        pending = client.pending
        send = client.ws.send
        device_id = client.device_id
        at = first
        n_sent = 0
        try:
            while at < end:
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                rid = next(self.ids)
                text = identify_message(rid, device_id) if kind == "local" else template % rid
                pending[rid] = perf()
                await send(text)
                n_sent += 1
                at += period_s
        except Exception:
            pass
        return n_sent

    async def op_events(self) -> dict[str, list[float]]:
        """Wall-clock arrival times of every pushed event since the last call, by event name."""
        events = dict(self.events)
        self.events = defaultdict(list)
        return events

    async def op_close(self) -> dict[str, Any]:
        clients, self.clients = self.clients, []
        await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
        for c in clients:
            if c.reader is not None:
                c.reader.cancel()
        return {"closed": len(clients)}


def identify_message(request_id: int, device_id: str) -> str:
    return '{"event":"identify","request_id":%d,"data":{"device_id":"%s"}}' % (request_id, device_id)  # noqa: UP031 (JSON braces)


# what the stub backend answers at once; the real suite gets a lobby.get instead (bench/gateway_load.py)
ROUTED_MESSAGE: Final = '{"event":"lobby.bench","request_id":%d,"data":{}}'


def worker_main(pipe: Pipe) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(Worker(pipe).run())
