"""The baseline of the gateway benchmarks: a bare FastAPI WebSocket echo with its own fan-out.

``/ws`` sends every message straight back; ``POST /broadcast`` ``{"event", "data"}`` sends one
serialised event frame to every open socket in a plain loop. No identify, routing, queues or limits:
whatever the gateway costs beyond this is its own. Run with the same uvicorn flags as the gateway.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response


def create_app() -> FastAPI:
    app = FastAPI()
    sockets: set[WebSocket] = set()

    @app.get("/healthz")
    async def healthz() -> dict[str, int]:
        return {"connections": len(sockets)}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    @app.post("/broadcast")
    async def broadcast(request: Request) -> Response:
        body = orjson.loads(await request.body())
        frame = orjson.dumps({"type": "event", "event": body["event"], "data": body.get("data", {})}).decode()
        delivered = 0
        for websocket in list(sockets):
            try:
                await websocket.send_text(frame)
                delivered += 1
            except Exception:
                pass
        return Response(orjson.dumps({"delivered": delivered}), media_type="application/json")

    return app
