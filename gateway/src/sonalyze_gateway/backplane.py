"""The Redis backplane: several gateways act as one (``REDIS_URL``; unset, this module is never imported).

Each gateway has an id (``GATEWAY_ID`` or a random one) and subscribes to its own pub/sub channel.
Redis holds, under ``REDIS_KEY_PREFIX``:

| key | type | what |
|---|---|---|
| ``{p}devices`` | hash | device id -> ``"<gateway id>|<connection id>"`` of its live socket |
| ``{p}claim:{device id}`` | string, 10 s expiry | held while one gateway decides a claim to the id (``claim_lock``) |
| ``{p}gw:{gateway id}`` | channel | what other gateways ask this one: push, probe, close; and their acks |
| ``{p}registry*`` | hash, string | the issued device ids (``redis_registry.py``) |

A push to a device that is not on this gateway is published to the channel of the gateway that holds
it, which hands the frame to its sockets and acks with what was delivered; a gateway that is gone has
no subscriber (``PUBLISH`` answers 0), so its devices count as offline at once and their stale entries
are deleted. Pushes are handled in the order they arrive on a channel, so one device sees them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
import redis.asyncio as redis

from sonalyze_gateway.connection_manager import Connection, ConnectionManager

logger = logging.getLogger("sonalyze.gateway.backplane")

POOL_CONNECTIONS: Final = 32
POOL_WAIT_S: Final = 10.0
CLAIM_LOCK_MS: Final = 10_000
CLAIM_RETRY_S: Final = 0.01
# a probe of a remote socket may take the liveness timeout; the answer gets this much more to arrive
PROBE_MARGIN_S: Final = 1.0

# delete a key or field only while it still holds the value we wrote (nobody else took it meanwhile)
_DELETE_IF_EQUAL: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# release: 1 = we held it (now forgotten), 0 = nobody held it, 2 = another socket (here or elsewhere) holds it
# ... and on 1 leaves a "just left" mark (KEYS[2], ARGV[3] ms): whoever admits the device meanwhile
# tells the lobby it went and came back, since pushes to it in the gap were lost
_RELEASE: Final = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
    return 1
end
if holder then return 2 end
return 0
"""
RELEASED_TO_ANOTHER: Final = 2
# how long a closed socket's device is "just left": a reconnect within it (anywhere) is announced as such
LEFT_MARK_MS: Final = 10_000
# the old gateway says "disconnected" only after this, and only if the device is not back anywhere:
# otherwise its notice could reach the lobby after the new gateway's "connected"
RELEASE_NOTICE_DELAY_S: Final = 1.0
# a broadcast in one round trip: look the devices up and publish one push to each gateway that holds some.
# KEYS[1] devices hash; ARGV: own gateway id, channel prefix, request id, reply channel, frame, device ids...
# Returns {gateway id of each device ('' = none), the gateways published to, each one's receiver count}.
_ROUTE: Final = """
local holders = redis.call('HMGET', KEYS[1], unpack(ARGV, 6))
local where, groups, order, receivers = {}, {}, {}, {}
for i, holder in ipairs(holders) do
    local gateway = ''
    if holder then gateway = string.match(holder, '^([^|]*)') end
    where[i] = gateway
    if gateway ~= '' and gateway ~= ARGV[1] then
        if not groups[gateway] then
            groups[gateway] = {}
            table.insert(order, gateway)
        end
        table.insert(groups[gateway], ARGV[5 + i])
    end
end
for n, gateway in ipairs(order) do
    local message = cjson.encode({op = 'push', id = ARGV[3] .. '#' .. gateway, reply = ARGV[4],
                                  device_ids = groups[gateway], frame = ARGV[5]})
    receivers[n] = redis.call('PUBLISH', ARGV[2] .. gateway, message)
end
return {where, order, receivers}
"""
# Lua's unpack() takes at most a few thousand values; longer lists go in two round trips
ROUTE_SCRIPT_MAX_DEVICES: Final = 4000


class BackplaneUnavailable(RuntimeError):
    """Redis cannot be reached (at startup: the message names ``REDIS_URL``)."""


def new_gateway_id() -> str:
    return "gw-" + secrets.token_hex(4)


class Backplane:
    """Routes pushes, liveness probes and closes to the gateway that holds a device's socket."""

    def __init__(
        self, url: str, prefix: str, gateway_id: str, manager: ConnectionManager, ack_timeout_s: float
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.gateway_id = gateway_id or new_gateway_id()
        self.channel = f"{prefix}gw:{self.gateway_id}"
        self.devices_key = f"{prefix}devices"
        self.ack_timeout_s = ack_timeout_s
        # a connect storm waits its turn for a connection rather than failing ("Too many connections")
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_S, decode_responses=True, health_check_interval=30
        )
        self.redis: redis.Redis = redis.Redis.from_pool(pool)
        self._manager = manager
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._batches: dict[str, _Batch] = {}  # request id -> the acks expected for it
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._delete_if_equal = self.redis.register_script(_DELETE_IF_EQUAL)
        self._release_script = self.redis.register_script(_RELEASE)
        self._route = self.redis.register_script(_ROUTE)
        # figures for /healthz and the benchmark
        self.n_remote_pushes = 0
        self.n_remote_devices = 0
        self.n_served = 0

    def figures(self) -> dict[str, int]:
        return {
            "remote_pushes": self.n_remote_pushes,
            "remote_devices": self.n_remote_devices,
            "served_pushes": self.n_served,
        }

    async def start(self) -> None:
        try:
            await self.redis.ping()
        except (redis.RedisError, OSError) as exc:
            await self.redis.aclose()
            raise BackplaneUnavailable(f"Redis at REDIS_URL={_safe(self.url)} is not reachable: {exc}") from exc
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="backplane-listener")
        logger.info("backplane: gateway %s on %s (prefix %r)", self.gateway_id, _safe(self.url), self.prefix)

    async def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the background calls in flight, e.g. releases of closed sockets."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # -- where devices are --------------------------------------------------------------------------

    async def bound(self, device_id: str, connection: Connection) -> None:
        """``connection`` of this gateway now holds ``device_id``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.devices_key, device_id, self._holder(connection))
            pipe.delete(self._left_key(device_id))
            await pipe.execute()

    def released(self, device_id: str, connection: Connection, notify: Callable[[str, str], None]) -> None:
        """The device's last socket here closed: forget it and, unless it is back somewhere within
        ``RELEASE_NOTICE_DELAY_S``, tell the lobby (``notify``) it left. If it is back, the gateway that
        took it has told the lobby (gone and back, in order) and this one says nothing."""
        self._spawn(self._release(device_id, self._holder(connection), notify))

    async def _release(self, device_id: str, holder: str, notify: Callable[[str, str], None]) -> None:
        try:
            outcome = await self._release_script(
                keys=[self.devices_key, self._left_key(device_id)], args=[device_id, holder, LEFT_MARK_MS]
            )
        except (redis.RedisError, OSError) as exc:
            logger.warning("backplane: could not release %s: %r", device_id, exc)
            notify(device_id, "device.disconnected")
            return
        if outcome == RELEASED_TO_ANOTHER:
            return
        await asyncio.sleep(RELEASE_NOTICE_DELAY_S)
        try:
            back = await self.redis.hexists(self.devices_key, device_id)
        except (redis.RedisError, OSError):
            back = False
        if not back:
            notify(device_id, "device.disconnected")

    async def whereabouts(self, device_id: str) -> tuple[str | None, bool]:
        """The id of another gateway that holds ``device_id`` (else None), and whether it just left a socket."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.devices_key, device_id)
            pipe.exists(self._left_key(device_id))
            holder, left = await pipe.execute()
        gateway_id = _gateway_of(holder)
        return (None if gateway_id == self.gateway_id else gateway_id), bool(left)

    async def remote_holder(self, device_id: str) -> str | None:
        """The id of another gateway that holds ``device_id``, else None."""
        return (await self.whereabouts(device_id))[0]

    def _left_key(self, device_id: str) -> str:
        return f"{self.prefix}left:{device_id}"

    def _holder(self, connection: Connection) -> str:
        return f"{self.gateway_id}|{connection.connection_id}"

    @asynccontextmanager
    async def claim_lock(self, device_id: str, wait_s: float) -> AsyncIterator[None]:
        """Claims to one device id are decided one at a time across all gateways."""
        key = f"{self.prefix}claim:{device_id}"
        token = f"{self.gateway_id}:{secrets.token_hex(4)}"
        deadline = time.monotonic() + wait_s
        while not await self.redis.set(key, token, nx=True, px=CLAIM_LOCK_MS):
            if time.monotonic() > deadline:
                raise TimeoutError(f"another gateway is deciding a claim to {device_id}")
            await asyncio.sleep(CLAIM_RETRY_S)
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._delete_if_equal(keys=[key], args=[token])

    # -- asking other gateways ----------------------------------------------------------------------

    async def broadcast(self, device_ids: Iterable[str], frame: str) -> tuple[list[str], list[str]]:
        """Hand ``frame`` to every socket of ``device_ids`` on whichever gateway: ``(delivered, offline)``."""
        delivered, missing = await self._manager.broadcast(device_ids, frame)
        if not missing:
            return delivered, missing
        if len(missing) > ROUTE_SCRIPT_MAX_DEVICES:
            return await self._broadcast_in_two_trips(delivered, missing, frame)
        request_id = f"{self.gateway_id}:{next(self._ids)}"
        batch = self._batches[request_id] = _Batch()
        try:
            where, gateways, receivers = await self._route(
                keys=[self.devices_key],
                args=[self.gateway_id, f"{self.prefix}gw:", request_id, self.channel, frame, *missing],
            )
        except (redis.RedisError, OSError) as exc:
            del self._batches[request_id]
            logger.warning("backplane: routing to %d devices failed: %r", len(missing), exc)
            return delivered, missing
        by_gateway: dict[str, list[str]] = defaultdict(list)
        offline: list[str] = []
        for device_id, gateway_id in zip(missing, where, strict=True):
            if gateway_id and gateway_id != self.gateway_id:
                by_gateway[gateway_id].append(device_id)
            else:
                offline.append(device_id)
        self._count(by_gateway)
        replies = await self._collect(request_id, batch, dict(zip(gateways, receivers, strict=True)), by_gateway)
        return self._merge(delivered, offline, by_gateway, replies)

    async def _broadcast_in_two_trips(
        self, delivered: list[str], missing: list[str], frame: str
    ) -> tuple[list[str], list[str]]:
        try:
            holders = await self.redis.hmget(self.devices_key, missing)
        except (redis.RedisError, OSError) as exc:
            logger.warning("backplane: lookup of %d devices failed: %r", len(missing), exc)
            return delivered, missing
        offline: list[str] = []
        by_gateway: dict[str, list[str]] = defaultdict(list)
        for device_id, holder in zip(missing, holders, strict=True):
            gateway_id = _gateway_of(holder)
            if gateway_id is None or gateway_id == self.gateway_id:
                offline.append(device_id)
            else:
                by_gateway[gateway_id].append(device_id)
        if not by_gateway:
            return delivered, offline
        self._count(by_gateway)
        replies = await self._ask_all(
            {gateway_id: {"op": "push", "device_ids": ids, "frame": frame} for gateway_id, ids in by_gateway.items()},
            self.ack_timeout_s,
        )
        return self._merge(delivered, offline, by_gateway, replies)

    def _count(self, by_gateway: dict[str, list[str]]) -> None:
        if by_gateway:
            self.n_remote_pushes += 1
            self.n_remote_devices += sum(len(ids) for ids in by_gateway.values())

    @staticmethod
    def _merge(
        delivered: list[str], offline: list[str], by_gateway: dict[str, list[str]], replies: dict[str, Any]
    ) -> tuple[list[str], list[str]]:
        for gateway_id, ids in by_gateway.items():
            reply = replies.get(gateway_id)
            if reply is None:
                offline.extend(ids)
                continue
            delivered.extend(reply["delivered"])
            offline.extend(reply["offline"])
        return delivered, offline

    async def probe_remote(self, gateway_id: str, device_id: str, timeout_s: float) -> bool | None:
        """Does the device's socket on ``gateway_id`` answer a ping? False: gone; None: cannot tell."""
        replies = await self._ask_all(
            {gateway_id: {"op": "probe", "device_id": device_id, "timeout_s": timeout_s}},
            timeout_s + PROBE_MARGIN_S,
        )
        if gateway_id not in replies:
            return None  # subscribed but silent: counted as alive by the caller
        reply = replies[gateway_id]
        return None if reply is None else reply.get("alive")

    async def close_remote(self, gateway_id: str, device_id: str, code: int, reason: str) -> None:
        """Close the device's sockets on ``gateway_id`` (a newer claim won, or a revocation)."""
        message = {"op": "close", "device_id": device_id, "code": code, "reason": reason}
        await self.redis.publish(f"{self.prefix}gw:{gateway_id}", orjson.dumps(message))

    async def close_everywhere(self, device_id: str, code: int, reason: str) -> None:
        """Close the device's sockets on whichever other gateway holds them."""
        gateway_id = await self.remote_holder(device_id)
        if gateway_id is not None:
            await self.close_remote(gateway_id, device_id, code, reason)

    async def _ask_all(self, messages: dict[str, dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        """Publish each message to its gateway; the acks that arrive within ``timeout_s``, by gateway."""
        request_id = f"{self.gateway_id}:{next(self._ids)}"
        batch = self._batches[request_id] = _Batch()
        async with self.redis.pipeline(transaction=False) as pipe:
            for gateway_id, message in messages.items():
                body = {**message, "id": f"{request_id}#{gateway_id}", "reply": self.channel}
                pipe.publish(f"{self.prefix}gw:{gateway_id}", orjson.dumps(body))
            try:
                receivers = await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                logger.warning("backplane: publish to %s failed: %r", ", ".join(messages), exc)
                receivers = [None] * len(messages)
        by_gateway = {
            gateway_id: list(message.get("device_ids") or [message["device_id"]])
            for gateway_id, message in messages.items()
        }
        return await self._collect(
            request_id, batch, dict(zip(messages, receivers, strict=True)), by_gateway, timeout_s
        )

    async def _collect(
        self,
        request_id: str,
        batch: _Batch,
        receivers: dict[str, int | None],
        by_gateway: dict[str, list[str]],
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The acks of ``request_id``: a gateway without a subscriber (gone) answers at once, for pushes
        ``{"delivered": [], "offline": <its devices>}`` and ``alive: False`` for probes; its entries are dropped."""
        replies: dict[str, Any] = {}
        awaited: set[str] = set()
        for gateway_id, n_receivers in receivers.items():
            if n_receivers == 0:  # no such gateway any more
                replies[gateway_id] = {"delivered": [], "offline": by_gateway.get(gateway_id, []), "alive": False}
                self._spawn(self._forget_gateway(gateway_id, by_gateway.get(gateway_id, [])))
            elif n_receivers is not None:
                awaited.add(gateway_id)
        try:
            if awaited:
                batch.expect(awaited)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(batch.done.wait(), timeout_s or self.ack_timeout_s)
                for gateway_id in awaited:
                    if gateway_id in batch.replies:
                        replies[gateway_id] = batch.replies[gateway_id]
                    else:
                        logger.warning("backplane: gateway %s did not answer in time", gateway_id)
        finally:
            self._batches.pop(request_id, None)
        return replies

    async def _forget_gateway(self, gateway_id: str, ids: list[str]) -> None:
        if not ids:
            return
        try:
            holders = await self.redis.hmget(self.devices_key, ids)
            for device_id, holder in zip(ids, holders, strict=True):
                if holder is not None and _gateway_of(holder) == gateway_id:
                    # it left without a word (its gateway died): marked, so its return is announced as one
                    await self._release_script(
                        keys=[self.devices_key, self._left_key(device_id)], args=[device_id, holder, LEFT_MARK_MS]
                    )
        except (redis.RedisError, OSError) as exc:
            logger.debug("backplane: cleanup of %s failed: %r", gateway_id, exc)

    # -- answering other gateways -------------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        await self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: keep trying, the local gateway goes on
                logger.warning("backplane: channel lost (%r); resubscribing in 1 s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(self.channel)

    async def _on_message(self, raw: str) -> None:
        try:
            message = orjson.loads(raw)
            op = message["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("backplane: unreadable message %.100r", raw)
            return
        if op == "ack":
            request_id, _, gateway_id = str(message["id"]).rpartition("#")
            batch = self._batches.get(request_id)
            if batch is not None:
                batch.add(gateway_id, message)
        elif op == "push":  # inline, so pushes reach each device in the order they were published
            self.n_served += 1
            delivered, offline = await self._manager.broadcast(message["device_ids"], message["frame"])
            self._reply(message, {"delivered": delivered, "offline": offline})
        elif op == "probe":
            self._spawn(self._answer_probe(message))
        elif op == "close":
            for connection in self._manager.connections_of(message["device_id"]):
                connection.abort(int(message["code"]), str(message["reason"]))
        else:
            logger.warning("backplane: unknown op %r", op)

    async def _answer_probe(self, message: dict[str, Any]) -> None:
        connections = [c for c in self._manager.connections_of(message["device_id"]) if not c.closed]
        answers = await asyncio.gather(*(c.probe(float(message["timeout_s"])) for c in connections))
        # no socket here any more: gone; any alive or unknown: alive or unknown, as the local rule has it
        alive: bool | None = False
        if any(a is True for a in answers):
            alive = True
        elif any(a is None for a in answers):
            alive = None
        self._reply(message, {"alive": alive})

    def _reply(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        reply_to = message.get("reply")
        if reply_to:
            self._spawn(self.redis.publish(reply_to, orjson.dumps({"op": "ack", "id": message["id"], **body})))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("backplane: background call failed: %r", exc)


class _Batch:
    """The acks of one request to several gateways, by gateway id; ``done`` once every expected one is in.

    Registered before the request goes out: an ack may be read before the request's own reply.
    """

    __slots__ = ("done", "expected", "replies")

    def __init__(self) -> None:
        self.replies: dict[str, dict[str, Any]] = {}
        self.expected: set[str] | None = None
        self.done = asyncio.Event()

    def add(self, gateway_id: str, reply: dict[str, Any]) -> None:
        self.replies[gateway_id] = reply
        self._check()

    def expect(self, gateway_ids: set[str]) -> None:
        self.expected = gateway_ids
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.expected <= self.replies.keys():
            self.done.set()


def _gateway_of(holder: str | bytes | None) -> str | None:
    """The gateway id of a ``{p}devices`` value (``"<gateway id>|<connection id>"``)."""
    if holder is None:
        return None
    text = holder.decode() if isinstance(holder, bytes) else holder
    return text.partition("|")[0]


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest
