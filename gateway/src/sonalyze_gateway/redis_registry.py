"""The issued device ids as the identity rules ask for them: from the local SQLite file, or from Redis.

`DeviceIdentity` awaits one interface (`Registry`). `LocalRegistry` wraps the SQLite `DeviceRegistry`
(every call answers from memory at once, as before); `RedisRegistry` keeps the same records in Redis,
so every gateway on one backplane sees the same issues and revocations the moment they happen (one
round trip per connect). The records are one hash, ``{prefix}registry``: device id -> ``"<generation>:<1|0>"``
(issued or revoked), and ``{prefix}registry:key``, the fingerprint of the signing key they belong to.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

from sonalyze_gateway.device_registry import DeviceRegistry

if TYPE_CHECKING:
    import redis.asyncio as redis

logger = logging.getLogger("sonalyze.gateway.devices")

# issue: a new id gets generation 1; an issued one keeps its generation; a revoked one is issued again
_ISSUE: Final = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
    redis.call('HSET', KEYS[1], ARGV[1], '1:1')
    return 1
end
local generation = tonumber(string.match(value, '^(%d+):'))
if string.sub(value, -1) ~= '1' then
    redis.call('HSET', KEYS[1], ARGV[1], generation .. ':1')
end
return generation
"""
# revoke: an issued id gets the next generation, not issued (every older credential is void)
_REVOKE: Final = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value or string.sub(value, -1) ~= '1' then return 0 end
local generation = tonumber(string.match(value, '^(%d+):'))
redis.call('HSET', KEYS[1], ARGV[1], (generation + 1) .. ':0')
return 1
"""


class Registry(Protocol):
    async def is_issued(self, device_id: str) -> bool: ...
    async def is_current(self, device_id: str, generation: int) -> bool: ...
    async def issue(self, device_id: str) -> int: ...
    async def revoke(self, device_id: str) -> bool: ...
    def cached_generation(self, device_id: str) -> int | None: ...
    async def count(self) -> int: ...
    def close(self) -> None: ...


class LocalRegistry:
    """The SQLite registry of one gateway (``DEVICE_REGISTRY_PATH``), answered from memory."""

    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry

    async def is_issued(self, device_id: str) -> bool:
        return self.registry.is_issued(device_id)

    async def is_current(self, device_id: str, generation: int) -> bool:
        return self.registry.is_current(device_id, generation)

    async def issue(self, device_id: str) -> int:
        return self.registry.issue(device_id)

    async def revoke(self, device_id: str) -> bool:
        return self.registry.revoke(device_id)

    def cached_generation(self, device_id: str) -> int | None:
        return self.registry.issue(device_id)

    async def count(self) -> int:
        return len(self.registry)

    def close(self) -> None:
        self.registry.close()


class RedisRegistry:
    """The registry shared by every gateway on the backplane."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self.key = f"{prefix}registry"
        self._issue = client.register_script(_ISSUE)
        self._revoke = client.register_script(_REVOKE)
        self._generations: dict[str, int] = {}  # learnt from issue(), for credential_for only

    async def bind_key(self, key_fingerprint: str) -> None:
        """The records belong to one signing key: with another, the old ones are forgotten (as in SQLite)."""
        stored = await self._redis.getset(f"{self.key}:key", key_fingerprint)
        if stored is not None and stored != key_fingerprint:
            n_forgotten = await self._redis.hlen(self.key)
            logger.warning(
                "DEVICE_TOKEN_KEY differs from the one the shared registry was written with: its %d device ids "
                "are forgotten (every gateway on one backplane needs the same DEVICE_TOKEN_KEY)",
                n_forgotten,
            )
            await self._redis.delete(self.key)

    async def _record(self, device_id: str) -> tuple[int, bool] | None:
        value = await self._redis.hget(self.key, device_id)
        if value is None:
            return None
        generation, _, issued = str(value).partition(":")
        return int(generation), issued == "1"

    async def is_issued(self, device_id: str) -> bool:
        record = await self._record(device_id)
        return record is not None and record[1]

    async def is_current(self, device_id: str, generation: int) -> bool:
        record = await self._record(device_id)
        return record is not None and record[1] and record[0] == generation

    async def issue(self, device_id: str) -> int:
        generation = int(await self._issue(keys=[self.key], args=[device_id]))
        self._generations[device_id] = generation
        return generation

    async def revoke(self, device_id: str) -> bool:
        self._generations.pop(device_id, None)
        return bool(await self._revoke(keys=[self.key], args=[device_id]))

    def cached_generation(self, device_id: str) -> int | None:
        return self._generations.get(device_id)

    async def count(self) -> int:
        values = await self._redis.hvals(self.key)
        return sum(1 for value in values if str(value).endswith(":1"))

    def close(self) -> None:
        """The client belongs to the backplane, which closes it."""
