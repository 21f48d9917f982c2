"""Who may act as a device id: the ``DEVICE_AUTH`` rules, as one decision per connection.

| credential presented | ``claim`` mode | ``token`` mode |
|---|---|---|
| valid for this id | admitted; a live socket of the id is replaced (closed 4503) | same |
| invalid, revoked, another id's | ``unauthorized``, closed 4501 | same |
| none, id never issued | admitted, issued a credential | same |
| none, id issued, no live socket | admitted (the app knows no credential) | ``unauthorized``, closed 4501 |
| none, id held by a live socket | ``device_in_use``, closed 4502, unless the old socket fails a ping within ``DEVICE_LIVENESS_TIMEOUT_S`` (then it is closed 4503 and the new one admitted) | ``unauthorized``, closed 4501 |

Decisions for one device id are taken one at a time (a lock per id), so two claimants racing for a
dead socket's id cannot both win. Nothing here does I/O except the registry's write on a first issue.

On a Redis backplane (``backplane.py``) the same rules span every gateway: the registry is the shared
one (``redis_registry.py``), the lock is also taken in Redis, a socket of the id on another gateway
counts as a holder (probed and closed through that gateway), and the admitted socket is recorded as
the device's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sonalyze_gateway.connection_manager import Connection, ConnectionManager
from sonalyze_gateway.device_tokens import DeviceTokens, InvalidDeviceToken
from sonalyze_gateway.redis_registry import Registry
from sonalyze_gateway.settings import DeviceAuth
from sonalyze_protocol.errors import AppError, DeviceInUse, Unauthorized
from sonalyze_protocol.logs import bind_context

if TYPE_CHECKING:
    from sonalyze_gateway.backplane import Backplane

logger = logging.getLogger("sonalyze.gateway.identity")
# how long a claim waits for another gateway's decision on the same id (beyond the liveness timeout)
CLAIM_WAIT_MARGIN_S: Final = 3.0

# 4500-4999: "do not reconnect as you are" (the same attempt would be refused again)
CLOSE_UNAUTHORIZED: Final = 4501
CLOSE_DEVICE_IN_USE: Final = 4502
CLOSE_REPLACED: Final = 4503
CLOSE_REASONS: Final[dict[int, str]] = {
    CLOSE_UNAUTHORIZED: "device credential missing or invalid",
    CLOSE_DEVICE_IN_USE: "device id in use by another connection",
    CLOSE_REPLACED: "replaced by a newer connection of this device",
}


class IdentityRefused(Exception):
    """The connection may not act as the device id: send ``error``, then close with ``close_code``."""

    def __init__(self, error: AppError, close_code: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Admission:
    device_token: str
    replaced: int  # old sockets of the device closed in favour of this one


class DeviceIdentity:
    """Applies the table above; binds an admitted connection through the caller's ``bind``."""

    def __init__(
        self,
        mode: DeviceAuth,
        tokens: DeviceTokens,
        registry: Registry,
        manager: ConnectionManager,
        liveness_timeout_s: float,
        backplane: Backplane | None = None,
    ) -> None:
        self.mode = mode
        self.tokens = tokens
        self.registry = registry
        self._manager = manager
        self._liveness_timeout_s = liveness_timeout_s
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._backplane = backplane

    def credential_for(self, device_id: str) -> str | None:
        """A fresh credential for a connection already admitted as ``device_id`` (None: generation unknown)."""
        generation = self.registry.cached_generation(device_id)
        return None if generation is None else self.tokens.issue(device_id, generation)

    async def admit(
        self, connection: Connection, device_id: str, token: str | None, bind: Callable[[bool], None]
    ) -> Admission | None:
        """Admit ``connection`` as ``device_id`` (calling ``bind``) or raise `IdentityRefused`.

        ``bind(moved)``: ``moved`` is True when the device's socket was on another gateway until now, or
        closed moments ago (the gateway it was on does not tell the lobby it left; the caller does, before
        the device is back, so the lobby hears both in order).

        None when the connection went away while its claim was decided.
        """
        if token is not None:
            await self._check_credential(device_id, token)
        elif self.mode is DeviceAuth.TOKEN and await self.registry.is_issued(device_id):
            raise IdentityRefused(
                Unauthorized(
                    f"device id '{device_id}' has a credential: connect with ?device_token= or send it in "
                    "identify's device_token (a device that lost it needs an operator to revoke it)"
                ),
                CLOSE_UNAUTHORIZED,
            )
        backplane = self._backplane
        async with self._lock(device_id):
            shared_lock = (
                backplane.claim_lock(device_id, self._liveness_timeout_s + CLAIM_WAIT_MARGIN_S)
                if backplane is not None
                else contextlib.nullcontext()
            )
            async with shared_lock:
                holders = [c for c in self._manager.connections_of(device_id) if not c.closed and c is not connection]
                remote, just_left = await backplane.whereabouts(device_id) if backplane is not None else (None, False)
                if (holders or remote) and token is None:
                    # only claim mode gets here: token mode refused above, since a live id is an issued one
                    await self._refuse_unless_all_dead(device_id, holders, remote)
                if connection.closed:
                    return None
                generation = await self.registry.issue(device_id)
                bind(remote is not None or just_left)
                if backplane is not None:
                    await backplane.bound(device_id, connection)
                    if remote is not None:
                        await backplane.close_remote(remote, device_id, CLOSE_REPLACED, CLOSE_REASONS[CLOSE_REPLACED])
            for old in holders:
                old.abort(CLOSE_REPLACED, CLOSE_REASONS[CLOSE_REPLACED])
            n_replaced = len(holders) + (remote is not None)
            if n_replaced:
                with bind_context(device_id=device_id):
                    logger.info("socket %d replaces %d older socket(s)", connection.connection_id, n_replaced)
            return Admission(token or self.tokens.issue(device_id, generation), n_replaced)

    async def _check_credential(self, device_id: str, token: str) -> None:
        try:
            claims = self.tokens.verify(token)
        except InvalidDeviceToken as exc:
            raise IdentityRefused(Unauthorized(str(exc)), CLOSE_UNAUTHORIZED) from None
        if claims.device_id != device_id:
            raise IdentityRefused(Unauthorized("device_token belongs to another device id"), CLOSE_UNAUTHORIZED)
        if not await self.registry.is_current(device_id, claims.generation):
            raise IdentityRefused(Unauthorized("device_token has been revoked"), CLOSE_UNAUTHORIZED)

    async def _refuse_unless_all_dead(self, device_id: str, holders: list[Connection], remote: str | None) -> None:
        probes = [c.probe(self._liveness_timeout_s) for c in holders]
        if remote is not None and self._backplane is not None:
            probes.append(self._backplane.probe_remote(remote, device_id, self._liveness_timeout_s))
        answers = await asyncio.gather(*probes)
        # None = cannot tell: counted as alive, so an unknown never hands the id to someone else
        if any(answer is not False for answer in answers):
            raise IdentityRefused(
                DeviceInUse(
                    f"device id '{device_id}' is in use by a live connection; present its device_token "
                    "to take over, or close the other connection first"
                ),
                CLOSE_DEVICE_IN_USE,
            )
        with bind_context(device_id=device_id):
            logger.info("%d socket(s) of the device missed the liveness ping; a new claimant takes over", len(answers))

    async def revoke(self, device_id: str) -> bool:
        """Void the device's credentials, free the id for a new claim, close its sockets (4501), on any gateway."""
        revoked = await self.registry.revoke(device_id)
        for connection in self._manager.connections_of(device_id):
            connection.abort(CLOSE_UNAUTHORIZED, "device credential revoked")
        if self._backplane is not None:
            await self._backplane.close_everywhere(device_id, CLOSE_UNAUTHORIZED, "device credential revoked")
        return revoked

    @asynccontextmanager
    async def _lock(self, device_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(device_id) or (asyncio.Lock(), 0)
        self._locks[device_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[device_id]
            if users == 1:
                del self._locks[device_id]
            else:
                self._locks[device_id] = (lock, users - 1)
