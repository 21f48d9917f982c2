"""A stand-in for lobby, measurement and simulation: one process serving each name on its own port.

``python stub_backend.py --token T lobby=8101 measurement=8102 simulation=8103``

``POST /gateway/handle`` (and each event of ``/gateway/handle_batch``) records every call (``GET /_calls``)
and answers by the event's data:
``sleep_s`` waits first, ``reply_error`` answers that error object, ``http_status`` answers a bare
status; otherwise it echoes what it received, with the headers the gateway set.
Every other path echoes the request (method, path, query, headers, body size and how the body
arrived); ``?status=`` sets the status, ``?sleep_s=`` waits, ``?download_bytes=N`` streams N bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

DOWNLOAD_CHUNK_BYTES = 64 * 1024


def create_app(names_by_port: dict[int, str], token: str) -> FastAPI:
    app = FastAPI()
    calls: list[dict[str, Any]] = []

    def service_name(request: Request) -> str:
        return names_by_port[request.scope["server"][1]]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_calls")
    async def get_calls(request: Request) -> list[dict[str, Any]]:
        name = service_name(request)
        return [c for c in calls if c["service"] == name]

    async def answer(request: Request, body: dict[str, Any], headers: bool) -> tuple[int, dict[str, Any] | None]:
        """One event's status and reply (``/gateway/handle``'s, or one entry of a batch's)."""
        call = {
            "service": service_name(request),
            "at_s": time.time(),
            "token_ok": request.headers.get("x-internal-token") == token,
            "x_request_id": request.headers.get("x-request-id") if headers else None,
            "x_device_id": request.headers.get("x-device-id") if headers else None,
            "batched": not headers,
            **body,
        }
        calls.append(call)
        if not call["token_ok"]:
            return 401, {"error": {"code": "unauthorized", "message": "bad token"}}
        data = body.get("data") or {}
        if sleep_s := data.get("sleep_s"):
            await asyncio.sleep(float(sleep_s))
        if "reply_error" in data:
            return 200, {"error": data["reply_error"]}
        if "http_status" in data:
            return int(data["http_status"]), None
        return 200, {"data": call}

    @app.post("/gateway/handle")
    async def handle(request: Request) -> Response:
        status, reply = await answer(request, await request.json(), headers=True)
        return Response(status_code=status) if reply is None else JSONResponse(reply, status_code=status)

    @app.post("/gateway/handle_batch")
    async def handle_batch(request: Request) -> Response:
        """As the services' (`sonalyze_protocol.handlers`): each event answered as alone, concurrently, in order."""
        events = (await request.json())["events"]
        answers = await asyncio.gather(*(answer(request, event, headers=False) for event in events))
        return JSONResponse({"replies": [{"status": status, "reply": reply} for status, reply in answers]})

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def echo(request: Request, path: str) -> Response:
        query = request.query_params
        if sleep_s := query.get("sleep_s"):
            await asyncio.sleep(float(sleep_s))
        if download := query.get("download_bytes"):
            return StreamingResponse(_chunks(int(download)), media_type="application/octet-stream")
        n_bytes = n_chunks = max_chunk_bytes = 0
        first_chunk_at_s = None
        async for chunk in request.stream():
            if not chunk:
                continue
            if first_chunk_at_s is None:
                first_chunk_at_s = time.time()
            n_chunks += 1
            n_bytes += len(chunk)
            max_chunk_bytes = max(max_chunk_bytes, len(chunk))
        status = int(query.get("status", "200"))
        payload = {
            "service": service_name(request),
            "method": request.method,
            "path": request.scope.get("raw_path", b"").decode(),
            "query": request.scope.get("query_string", b"").decode(),
            "headers": dict(request.headers),
            "n_bytes": n_bytes,
            "n_chunks": n_chunks,
            "max_chunk_bytes": max_chunk_bytes,
            "first_chunk_at_s": first_chunk_at_s,
        }
        response = JSONResponse(payload, status_code=status, headers={"X-Stub-Service": service_name(request)})
        response.set_cookie("stub", "1")
        return response

    return app


async def _chunks(n_bytes: int):  # type: ignore[no-untyped-def]
    block = b"x" * DOWNLOAD_CHUNK_BYTES
    sent = 0
    while sent < n_bytes:
        piece = block[: min(DOWNLOAD_CHUNK_BYTES, n_bytes - sent)]
        sent += len(piece)
        yield piece


async def serve(names_by_port: dict[int, str], token: str) -> None:
    app = create_app(names_by_port, token)
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        for port in names_by_port
    ]
    await asyncio.gather(*(s.serve() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("services", nargs="+", help="name=port")
    args = parser.parse_args()
    names_by_port = {int(port): name for name, port in (s.split("=") for s in args.services)}
    asyncio.run(serve(names_by_port, args.token))


if __name__ == "__main__":
    main()
