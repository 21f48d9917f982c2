"""Figures for the lobby's concurrent paths: N devices joining one lobby, M lobbies created at once.

    .venv/bin/python bench/lobby_concurrency.py                       # SQLite in a temp dir
    .venv/bin/python bench/lobby_concurrency.py postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Prints wall time and per-operation latency percentiles; pushes go to an in-process fake gateway.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from sonalyze_db import RowReader, make_engine, make_sessionmaker
from sonalyze_lobby import migrations, service
from sonalyze_lobby.broadcast import Broadcaster
from sonalyze_lobby.context import LobbyContext
from sonalyze_lobby.settings import Settings
from sonalyze_protocol.broadcast import BroadcastClient

N_JOINS = 50
N_CREATES = 200


async def timed(coro) -> float:
    started = time.perf_counter()
    await coro
    return (time.perf_counter() - started) * 1000


def report(name: str, wall_s: float, latencies_ms: list[float]) -> None:
    q = statistics.quantiles(latencies_ms, n=100)
    print(
        f"{name:<28} wall {wall_s * 1000:7.0f} ms   p50 {q[49]:6.1f} ms   p95 {q[94]:6.1f} ms"
        f"   max {max(latencies_ms):6.1f} ms"
    )


async def main(admin_url: str | None) -> None:
    if admin_url:
        from sonalyze_suite.testing import create_database, drop_database

        url = await create_database(admin_url, "lobby_bench")
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    engine = make_engine(url)
    await migrations.upgrade(engine)
    sessions = make_sessionmaker(engine)
    rows = RowReader(engine)
    settings = Settings(database_url=url)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"delivered": [], "offline": []}))
    async with httpx.AsyncClient(transport=transport) as http:
        broadcaster = Broadcaster(BroadcastClient("http://gateway", "t", http))

        async def act(device_id, use_case, *args):
            async with sessions() as session:
                ctx = LobbyContext(device_id, None, session, rows, settings, broadcaster)
                return await use_case(ctx, *args)

        prefix = uuid.uuid4().hex[:6]
        lobby = await act(f"{prefix}-admin", service.create_lobby)
        started = time.perf_counter()
        joins = await asyncio.gather(
            *(timed(act(f"{prefix}-{i}", service.join_lobby, lobby.code)) for i in range(N_JOINS))
        )
        report(f"{N_JOINS} joins, one lobby", time.perf_counter() - started, joins)

        started = time.perf_counter()
        creates = await asyncio.gather(*(timed(act(f"{prefix}-c{i}", service.create_lobby)) for i in range(N_CREATES)))
        report(f"{N_CREATES} creates", time.perf_counter() - started, creates)
    await engine.dispose()
    if admin_url:
        await drop_database(admin_url, url)
    print(f"database: {url.split('://')[0]}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
