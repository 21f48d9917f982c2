"""`BroadcastClient`: services push events to devices through the gateway's ``/internal/broadcast``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel

from sonalyze_protocol.auth import INTERNAL_TOKEN_HEADER
from sonalyze_protocol.logs import REQUEST_ID_HEADER, request_id_var

logger = logging.getLogger("sonalyze.broadcast")


class BroadcastRequest(BaseModel):
    device_ids: list[str]
    event: str
    data: dict[str, Any] = {}


class BroadcastResult(BaseModel):
    delivered: list[str] = []
    offline: list[str] = []


class BroadcastClient:
    """Best effort: a push that fails is logged and reported as ``None``, never raised.

    A change that has been committed must not fail because the gateway is down; clients catch up
    through the service's own polling endpoint. ``gateway_url`` may list several gateways' internal
    listeners, comma-separated (replicas on one backplane: any of them reaches every device); a push
    goes to the one that answered last and moves on to the next when one cannot be reached or drops the
    connection (a gateway killed mid-request: the push may then arrive twice, never not at all; a timeout
    is not retried).
    """

    def __init__(self, gateway_url: str, token: str, client: httpx.AsyncClient, timeout_s: float = 5.0) -> None:
        self._urls = [u.strip().rstrip("/") + "/internal/broadcast" for u in gateway_url.split(",") if u.strip()]
        self._current = 0
        self._token = token
        self._client = client
        self._timeout_s = timeout_s

    async def push(self, device_ids: Iterable[str], event: str, data: dict[str, Any]) -> BroadcastResult | None:
        ids = list(dict.fromkeys(device_ids))
        if not ids:
            return BroadcastResult()
        headers = {INTERNAL_TOKEN_HEADER: self._token}
        if (rid := request_id_var.get()) is not None:
            headers[REQUEST_ID_HEADER] = rid
        body = BroadcastRequest(device_ids=ids, event=event, data=data).model_dump(mode="json")
        for attempt in range(len(self._urls)):
            index = (self._current + attempt) % len(self._urls)
            try:
                response = await self._client.post(
                    self._urls[index], json=body, headers=headers, timeout=self._timeout_s
                )
                response.raise_for_status()
                result = BroadcastResult.model_validate(response.json())
            except httpx.TimeoutException as exc:  # it may still deliver: not sent twice
                logger.warning("broadcast of %s to %d devices timed out: %s", event, len(ids), exc)
                return None
            except httpx.TransportError as exc:  # that gateway is gone (refused, reset): the next one
                logger.warning("broadcast of %s: %s unreachable (%r)", event, self._urls[index], exc)
                continue
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("broadcast of %s to %d devices failed: %s", event, len(ids), exc)
                return None
            self._current = index
            logger.debug("broadcast %s delivered=%s offline=%s", event, result.delivered, result.offline)
            return result
        logger.warning("broadcast of %s to %d devices failed: no gateway reachable", event, len(ids))
        return None
