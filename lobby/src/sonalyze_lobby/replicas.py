"""Lobby replicas on one database: a session's events reach the replica that drives it.

The gateway sends a phone's event to any replica (``LOBBY_URL`` lists them). A ``measurement.*`` event
naming a session this replica does not drive is routed by the session's row (`session_store`): driven by
a live replica -> forwarded to its ``/gateway/handle`` (``REPLICA_URL``) and its answer returned; its lease
expired (the replica died) or it was this replica's before a restart -> taken over here and resumed first;
finished -> its stored state is read here. A device's connection change is relayed to the replicas driving
its sessions (``POST /internal/measurement/connection``), a lobby's closing to the one driving its session.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from sonalyze_lobby.context import LobbyApp, LobbyContext, lobby_app
from sonalyze_lobby.measurement_protocol import ConnectionChanged
from sonalyze_lobby.session_store import DatabaseStore, UndecodableState, decode, running_session_of
from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER, require_internal_token, settings_token
from sonalyze_protocol.errors import AppError, ServiceUnavailable
from sonalyze_protocol.handlers import Handler

logger = logging.getLogger("sonalyze.lobby.replicas")

CONNECTION_PATH = "/internal/measurement/connection"


def route_to_owner(handlers: Mapping[str, Handler[LobbyContext, Any]]) -> dict[str, Handler[LobbyContext, Any]]:
    """The handler table with every event that names a session routed to the replica driving it."""
    return {
        event: Handler(handler.model, _routed(event, handler.func))
        if "session_id" in handler.model.model_fields
        else handler
        for event, handler in handlers.items()
    }


def _routed(
    event: str, func: Callable[[LobbyContext, Any], Awaitable[Any]]
) -> Callable[[LobbyContext, Any], Awaitable[Any]]:
    async def call(ctx: LobbyContext, data: Any) -> Any:
        coordinator = ctx.coordinator
        store = coordinator.store if coordinator is not None else None
        session_id: str = data.session_id
        if coordinator is None or not isinstance(store, DatabaseStore) or session_id in coordinator.driven():
            return await func(ctx, data)
        where = await store.locate(session_id)
        if where is None:
            return await func(ctx, data)  # not_found, as always
        if not where.running:  # finished: its stored state answers (status, results, late repeats)
            with contextlib.suppress(UndecodableState):
                coordinator.retain(decode(where.state_version, where.document).state)
            return await func(ctx, data)
        if where.owner == store.replica.replica_id or where.lease_expired:
            from sonalyze_lobby.restart import resume_sessions

            await resume_sessions(store.app, store)  # takes this one over (and any other that expired)
            return await func(ctx, data)
        return await _forward(store, where.owner_url, event, ctx, data)

    return call


async def _forward(store: DatabaseStore, owner_url: str | None, event: str, ctx: LobbyContext, data: BaseModel) -> Any:
    if not owner_url:
        raise ServiceUnavailable("the lobby replica driving this session cannot be reached; try again")
    app = store.app
    body = {
        "event": event,
        "request_id": ctx.request_id,
        "device_id": ctx.device_id,
        "data": data.model_dump(mode="json"),
    }
    try:
        response = await app.http.post(
            f"{owner_url}/gateway/handle",
            json=body,
            headers={INTERNAL_TOKEN_HEADER: app.settings.internal_auth_token or ""},
            timeout=app.settings.http_timeout_seconds,
        )
        reply = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(
            f"the lobby replica driving session {data.session_id} did not answer ({type(exc).__name__}); try again"  # type: ignore[attr-defined]
        ) from None
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        raise AppError.from_error(reply["error"])
    if response.status_code != 200 or not isinstance(reply, dict):
        raise ServiceUnavailable(f"the lobby replica driving the session answered HTTP {response.status_code}")
    return reply.get("data")


class Relay:
    """Tells the replicas driving other sessions of a device or a lobby what concerns them."""

    def __init__(self, app: LobbyApp, store: DatabaseStore) -> None:
        self._app = app
        self._store = store

    def _headers(self) -> dict[str, str]:
        return {INTERNAL_TOKEN_HEADER: self._app.settings.internal_auth_token or ""}

    async def connection_changed(self, device_id: str, connected: bool, driven: set[str]) -> None:
        for where in await self._store.running_elsewhere(driven):
            if device_id not in where.device_ids() or not where.owner_url or where.lease_expired:
                continue  # an expired one is resumed with what the stored state knows
            try:
                await self._app.http.post(
                    where.owner_url + CONNECTION_PATH,
                    json={"session_id": where.session_id, "device_id": device_id, "connected": connected},
                    headers=self._headers(),
                    timeout=self._app.settings.http_timeout_seconds,
                )
            except httpx.HTTPError as exc:
                logger.warning("could not relay %s's connection to replica %s: %s", device_id, where.owner, exc)

    async def lobby_closed(self, lobby_id: str) -> None:
        """The lobby closed here while another replica drives its session: that one cancels it."""
        async with self._app.database.sessionmaker() as session:
            session_id = await running_session_of(session, uuid.UUID(lobby_id))
            await session.commit()
        where = await self._store.locate(session_id) if session_id is not None else None
        if where is None or not where.running:
            return
        if where.owner == self._store.replica.replica_id or where.lease_expired:
            from sonalyze_lobby.restart import resume_sessions

            await resume_sessions(self._app, self._store)
            if (state := self._app.coordinator.holding(lobby_id)) is not None:
                await self._app.coordinator.lobby_closed(state.lobby_id)
            return
        admin = str(where.document.get("session", {}).get("admin_device_id", ""))
        body = {
            "event": "measurement.cancel_session",
            "request_id": None,
            "device_id": admin,
            "data": {"session_id": where.session_id, "reason": "lobby_closed"},
        }
        try:
            await self._app.http.post(
                f"{where.owner_url}/gateway/handle",
                json=body,
                headers=self._headers(),
                timeout=self._app.settings.http_timeout_seconds,
            )
        except httpx.HTTPError as exc:  # its idle timeout ends it in the end
            logger.warning("could not tell replica %s that lobby %s closed: %s", where.owner, lobby_id, exc)


class ConnectionNotice(BaseModel):
    session_id: str
    device_id: str
    connected: bool


router = APIRouter(dependencies=[Depends(require_internal_token(settings_token))], tags=["internal"])


@router.post(CONNECTION_PATH)
async def connection_notice(notice: ConnectionNotice, request: Request) -> dict[str, bool]:
    """Another replica heard that a device of a session driven here came or went."""
    coordinator = lobby_app(request).coordinator
    if notice.session_id not in coordinator.driven():
        return {"applied": False}
    try:
        await coordinator.send(notice.session_id, ConnectionChanged(notice.device_id, notice.connected))
    except AppError as exc:
        logger.warning("connection notice for session %s refused: %s", notice.session_id, exc.message)
        return {"applied": False}
    return {"applied": True}
