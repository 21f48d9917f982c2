"""App factory of the gateway: ``/ws``, ``/healthz`` and the ``/v1`` proxy on the public port; the
internal listener (``internal.py``, ``/internal/*``) started by the lifespan.

Per WebSocket message: size check -> rate check -> parse -> ``identify`` answered here, anything
else routed to its service in a task of its own, so a slow backend never holds up the next message.
Bad input is answered with an error frame and the socket stays open. Who may act as which device
is decided in ``identity.py``; messages that arrive while that is decided wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from sonalyze_gateway.backpressure import ServiceGate
from sonalyze_gateway.connection_manager import Connection, ConnectionManager
from sonalyze_gateway.device_registry import DeviceRegistry
from sonalyze_gateway.device_tokens import DeviceTokens, generate_key, key_fingerprint
from sonalyze_gateway.drain import CLOSE_SERVICE_RESTART, DRAIN_REASON, DrainState, drain_before_exit
from sonalyze_gateway.gc_tuning import GcTuning
from sonalyze_gateway.http_client import EventForwarder, LifecycleNotifier, Proxy, make_session, replica_urls
from sonalyze_gateway.identity import CLOSE_REASONS, Admission, DeviceIdentity, IdentityRefused
from sonalyze_gateway.internal import InternalListener, create_internal_app
from sonalyze_gateway.liveness import prober_for
from sonalyze_gateway.rate_limit import TokenBucket
from sonalyze_gateway.redis_registry import LocalRegistry, Registry
from sonalyze_gateway.router import Target, proxy_route_for, route_for
from sonalyze_gateway.schemas import ForwardLoad, Health, IdentifyData, IdentifyReply
from sonalyze_gateway.seen_devices import SeenDevices
from sonalyze_gateway.settings import Settings
from sonalyze_gateway.web import mount_web
from sonalyze_protocol.envelope import (
    ClientMessage,
    MessageError,
    RequestId,
    dumps,
    error_frame,
    event_frame,
    parse_client_message,
    response_frame,
)
from sonalyze_protocol.errors import (
    AppError,
    BadRequest,
    InternalError,
    InvalidState,
    MessageTooLarge,
    NotFound,
    NotIdentified,
    Overloaded,
    RateLimited,
    UnknownEvent,
)
from sonalyze_protocol.handlers import describe_validation_error
from sonalyze_protocol.http_errors import install_error_handlers
from sonalyze_protocol.json_rule import install_json_body_rule
from sonalyze_protocol.logs import RequestLogMiddleware, bind_context, configure_logging
from sonalyze_protocol.storage_client import StorageRecorder, outbox_health
from sonalyze_protocol.telemetry import TELEMETRY_OFF

if TYPE_CHECKING:
    from sonalyze_gateway.backplane import Backplane

logger = logging.getLogger("sonalyze.gateway")

LISTENER_STOP_S: Final = 5.0

IDENTIFY: Final = "identify"
IDENTIFIED: Final = "gateway.identified"
IDENTIFY_REQUIRED: Final = "gateway.identify_required"
PROXY_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ABANDONED_WITH_THEIR_SOCKET: Final = frozenset({"simulation.run", "analysis.run"})
"""Events whose forward is cancelled when their socket closes: the gateway's connection closes with it and
the service stops the work (seconds of a worker) that nobody can receive any more."""
# messages a socket may send while its claim to a device id is decided (at most the liveness timeout)
PENDING_BACKLOG_MESSAGES: Final = 8
# response headers a browser page may read (the app's web build checks the signal's hash and timing)
CORS_EXPOSED_HEADERS: Final = ["X-Request-Id", "X-Audio-Hash", "X-Signal-Id", "X-Signal-Timing"]


@dataclass
class Gateway:
    """Everything the routes share; built in the lifespan."""

    settings: Settings
    manager: ConnectionManager
    forwarder: EventForwarder
    notifier: LifecycleNotifier
    proxy: Proxy
    gc_tuning: GcTuning
    gates: dict[Target, ServiceGate]
    identity: DeviceIdentity
    backplane: Backplane | None = None  # REDIS_URL: the gateways that share pushes and device ids
    drain: DrainState = field(default_factory=DrainState)
    connection_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging("gateway", settings.log_level)
    logging.getLogger("uvicorn.error").addFilter(_drop_websocket_accept_lines)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.has_internal_token:
            logger.warning(
                "!!! INTERNAL_AUTH_TOKEN is not set: the services will refuse every event the gateway forwards "
                "and the gateway every broadcast. Set the same random INTERNAL_AUTH_TOKEN for all services. !!!"
            )
        key = settings.device_token_key
        if not key:
            key = generate_key()
            logger.info("DEVICE_TOKEN_KEY is not set: device credentials are signed with a key of this process only")
        manager = ConnectionManager()
        backplane, registry = await _backplane_and_registry(settings, manager, key)
        identity = DeviceIdentity(
            settings.device_auth, DeviceTokens(key), registry, manager, settings.device_liveness_timeout_s, backplane
        )
        internal = InternalListener(
            create_internal_app(lambda: gateway, settings), settings.internal_host, settings.internal_port
        )
        logger.info(
            "DEVICE_AUTH=%s, %d device ids issued; internal listener on %s:%d",
            settings.device_auth.value,
            await registry.count(),
            internal.host,
            internal.port,
        )
        session = make_session()
        urls = {
            Target.LOBBY: settings.lobby_url,
            Target.MEASUREMENT: settings.measurement_url,
            Target.SIMULATION: settings.simulation_url,
        }
        forwarder = EventForwarder(
            urls,
            settings.internal_auth_token,
            settings.http_timeout_seconds,
            batch_after_in_flight=settings.event_batch_after_in_flight,
        )
        recorder = await StorageRecorder.from_settings("gateway", settings)
        app.state.recorder = recorder
        seen = SeenDevices(recorder) if recorder is not None else None
        gateway = Gateway(
            settings=settings,
            manager=manager,
            forwarder=forwarder,
            notifier=LifecycleNotifier(forwarder, seen),
            proxy=Proxy(session, {t: replica_urls(u)[0] for t, u in urls.items()}, settings.http_timeout_seconds),
            gc_tuning=GcTuning(closed_sockets=lambda: gateway.manager.n_closed),
            gates={
                target: ServiceGate(
                    settings.max_inflight_per_service,
                    settings.overload_retry_after_ms,
                    settings.overload_max_wait_ms,
                )
                for target in urls
            },
            identity=identity,
            backplane=backplane,
        )
        app.state.gateway = gateway
        restore_signals = drain_before_exit(gateway.drain, gateway.manager, lambda: _settle(gateway))
        gateway.gc_tuning.start()
        if seen is not None:
            seen.start()
        internal_task = asyncio.get_running_loop().create_task(internal.serve())
        try:
            yield
        finally:
            internal.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(internal_task, LISTENER_STOP_S)
            registry.close()
            restore_signals()
            gateway.drain.draining = True
            await gateway.manager.close_all(CLOSE_SERVICE_RESTART, DRAIN_REASON)
            if backplane is not None:
                with contextlib.suppress(Exception):
                    await _settle(gateway)
                await backplane.aclose()
            for task in list(gateway.tasks):
                task.cancel()
            await gateway.notifier.drain()
            if seen is not None:
                await seen.aclose()
            if recorder is not None:
                await recorder.aclose()
            forwarder.close()
            await session.close()
            await gateway.gc_tuning.stop()

    app = FastAPI(telemetry=TELEMETRY_OFF, title="Sonalyze gateway", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_json_body_rule(app, settings)
    app.add_middleware(RequestLogMiddleware)
    if settings.cors_allowed_origins or settings.cors_allowed_origin_regex:
        # the app's web build calls /v1 from its own origin; WebSockets are not subject to CORS
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_origin_regex=settings.cors_allowed_origin_regex,
            allow_methods=PROXY_METHODS,
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz(request: Request) -> Any:
        """Liveness: the process answers; also sockets, devices and each service's forwards in flight.

        503 with ``status: draining`` once the gateway drains (a proxy's health check takes it out).
        """
        gateway: Gateway = request.app.state.gateway
        forwards = {
            target.value: ForwardLoad(in_flight=gate.in_flight, limit=gate.limit, refused=gate.refused)
            for target, gate in gateway.gates.items()
        }
        backplane = gateway.backplane
        health = Health(
            status="draining" if gateway.drain.draining else "ok",
            connections=gateway.manager.n_connections,
            devices=gateway.manager.n_devices,
            forwards=forwards,
            outbox=await outbox_health(getattr(request.app.state, "recorder", None)),
            gateway_id=backplane.gateway_id if backplane is not None else None,
            backplane=backplane.figures() if backplane is not None else None,
        )
        if gateway.drain.draining:
            return JSONResponse(health.model_dump(), status_code=503)
        return health

    @app.api_route("/internal/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def not_public(path: str) -> Response:
        """The internal API is served on the internal listener only (``INTERNAL_HOST:INTERNAL_PORT``)."""
        raise NotFound("no such endpoint")

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        """The phones' socket: identify, then events routed to the services; pushes come back here."""
        if websocket.app.state.gateway.drain.draining:  # refused before the handshake: 503, try another gateway
            error = {"error": {"code": "service_unavailable", "message": DRAIN_REASON}}
            await websocket.send_denial_response(JSONResponse(error, status_code=503, headers={"Retry-After": "0"}))
            return
        await websocket.accept()
        await _serve_socket(websocket.app.state.gateway, websocket)

    @app.api_route("/v1/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def proxy(request: Request) -> Response:
        """``/v1/measurement/*``, ``/v1/jobs/*`` -> measurement; ``/v1/simulation/*`` -> simulation."""
        gateway: Gateway = request.app.state.gateway
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        route = proxy_route_for(raw_path.decode("latin-1"))
        if route is None:
            raise NotFound(f"no service serves {request.url.path}")
        return await gateway.proxy.forward(request, *route)

    mount_web(app, settings.web_dir)

    return app


async def _serve_socket(gateway: Gateway, websocket: WebSocket) -> None:
    settings = gateway.settings
    connection = Connection(
        next(gateway.connection_ids),
        websocket.send_text,
        websocket.close,
        settings.outbound_queue_frames,
        prober_for(getattr(websocket, "_receive", None)),
    )
    gateway.manager.add(connection)
    gateway.gc_tuning.socket_opened()
    connection.start()
    session = _SocketSession(gateway, connection)
    query = websocket.query_params
    if (device_id := query.get("device_id")) is not None:
        session.identify_from_query(device_id, query.get("device_token") or None)
    else:
        data = {
            "message": "send identify with your device_id (and device_token once you have one)",
            "device_auth": settings.device_auth.value,
        }
        connection.push(dumps(event_frame(IDENTIFY_REQUIRED, data)))
    opened_s = time.monotonic()
    close_code: Any = None
    receive = websocket.receive
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                close_code = message.get("code")
                break
            raw = message.get("text")
            try:
                session.on_message(raw if raw is not None else message.get("bytes") or b"")
            except Exception:  # a bug must cost one message, not the socket
                logger.exception("socket %d: message handling failed", connection.connection_id)
                connection.push(dumps(error_frame(None, None, InternalError("the gateway failed on this message"))))
    finally:
        await connection.finish()
        if session.pending is not None:
            session.pending.cancel()
        for task in list(session.abandonable):
            task.cancel()
        last_of_device = gateway.manager.remove(connection)
        if last_of_device is not None:
            if gateway.backplane is not None:  # unless it moved to another gateway meanwhile
                gateway.backplane.released(last_of_device, connection, gateway.notifier.notify)
            else:
                gateway.notifier.notify(last_of_device, "device.disconnected")
        with bind_context(device_id=connection.device_id):
            logger.info(
                "socket %d closed code=%s messages=%d open_s=%.1f",
                connection.connection_id,
                close_code,
                session.n_messages,
                time.monotonic() - opened_s,
            )


class _SocketSession:
    """The per-socket state machine: unidentified, deciding its claim to a device id, then routing events."""

    __slots__ = (
        "abandonable",
        "backlog",
        "bucket",
        "connection",
        "device_token",
        "gateway",
        "max_message_bytes",
        "n_messages",
        "pending",
    )  # fmt: skip

    def __init__(self, gateway: Gateway, connection: Connection) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.connection = connection
        self.bucket = TokenBucket(settings.rate_limit_rps, settings.rate_limit_burst, time.monotonic())
        self.max_message_bytes = settings.max_message_bytes
        self.n_messages = 0
        self.pending: asyncio.Task[None] | None = None  # the claim being decided
        self.backlog: list[str | bytes] = []  # messages that arrived meanwhile, handled once it is decided
        self.device_token: str | None = None  # the credential handed to this socket
        self.abandonable: set[asyncio.Task[None]] = set()  # forwards of ABANDONED_WITH_THEIR_SOCKET events

    def identify_from_query(self, device_id: str, device_token: str | None) -> None:
        try:
            data = IdentifyData(device_id=device_id, device_token=device_token)
        except ValidationError as exc:
            error = BadRequest("query parameter " + describe_validation_error(exc, prefix=""))
            self._reply_error(IDENTIFY, None, error)
            return
        self._claim(data, None, reply=False)

    def on_message(self, raw: str | bytes) -> None:
        self.n_messages += 1
        n_bytes = len(raw)
        if isinstance(raw, str) and self.max_message_bytes >= n_bytes > self.max_message_bytes // 4:
            n_bytes = len(raw.encode())
        if n_bytes > self.max_message_bytes:
            error = MessageTooLarge(f"message exceeds MAX_MESSAGE_BYTES ({self.max_message_bytes} bytes)")
            self._reply_error(None, None, error, started_s=time.perf_counter())
            return
        if self.pending is not None:
            if len(self.backlog) < PENDING_BACKLOG_MESSAGES:
                self.backlog.append(raw)
            else:
                event, request_id = _peek(raw)
                self._reply_error(event, request_id, NotIdentified("wait until identify has been answered"))
            return
        self._handle(raw)

    def _handle(self, raw: str | bytes) -> None:
        """A message within the size limit: rate check, parse, then answer or route it."""
        retry_after_ms = self.bucket.try_acquire(time.monotonic())
        if retry_after_ms:
            event, request_id = _peek(raw)
            error = RateLimited("too many messages, slow down", retry_after_ms=retry_after_ms)
            self._reply_error(event, request_id, error)
            return
        try:
            message = parse_client_message(raw)
        except MessageError as exc:
            self._reply_error(exc.event, exc.request_id, exc)
            return
        target = route_for(message.event)
        if target is Target.GATEWAY:
            self._identify(message)
        elif self.connection.device_id is None:
            self._reply_error(message.event, message.request_id, NotIdentified("send 'identify' first"))
        elif target is None:
            self._reply_error(message.event, message.request_id, UnknownEvent(f"unknown event '{message.event}'"))
        else:
            gate = self.gateway.gates[target]
            if not gate.try_enter():
                busy = Overloaded(f"{target} is busy, try again later", retry_after_ms=gate.retry_after_ms)
                self._reply_error(message.event, message.request_id, busy)
                return
            task = asyncio.get_running_loop().create_task(self._forward(target, gate, message, time.perf_counter()))
            self.gateway.tasks.add(task)
            task.add_done_callback(self.gateway.tasks.discard)
            if message.event in ABANDONED_WITH_THEIR_SOCKET:
                self.abandonable.add(task)
                task.add_done_callback(self.abandonable.discard)

    def _identify(self, message: ClientMessage) -> None:
        started_s = time.perf_counter()
        try:
            data = IdentifyData.model_validate(message.data)
        except ValidationError as exc:
            self._reply_error(message.event, message.request_id, BadRequest(describe_validation_error(exc)))
            return
        current = self.connection.device_id
        if current is None:
            self._claim(data, message.request_id, reply=True)
            return
        if current != data.device_id:
            error = InvalidState(f"this connection is already identified as '{current}'")
            self._reply_error(message.event, message.request_id, error)
            return
        if self.device_token is None:
            self.device_token = self.gateway.identity.credential_for(current)
        if self.device_token is None:
            self._reply_error(message.event, message.request_id, InternalError("no credential for this connection"))
            return
        reply = self._identified(current, self.device_token)
        self.connection.push(dumps(response_frame(message.event, message.request_id, reply)))
        self._log(message.event, message.request_id, Target.GATEWAY, "ok", started_s)

    def _claim(self, data: IdentifyData, request_id: RequestId, *, reply: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._admit(data, request_id, reply, time.perf_counter()))
        self.pending = task
        self.gateway.tasks.add(task)
        task.add_done_callback(self.gateway.tasks.discard)

    async def _admit(self, data: IdentifyData, request_id: RequestId, reply: bool, started_s: float) -> None:
        device_id = data.device_id
        admission: Admission | None = None
        try:
            admission = await self.gateway.identity.admit(
                self.connection, device_id, data.device_token, lambda moved: self._bind(device_id, moved)
            )
        except IdentityRefused as refused:
            with bind_context(request_id=request_id, device_id=device_id):
                logger.warning("socket %d refused: %s", self.connection.connection_id, refused.error.message)
            self._log(IDENTIFY, request_id, Target.GATEWAY, refused.error.code.value, started_s)
            frame = dumps(error_frame(IDENTIFY, request_id, refused.error))
            await self.connection.say_and_close(frame, refused.close_code, CLOSE_REASONS[refused.close_code])
            return
        except Exception:
            with bind_context(request_id=request_id, device_id=device_id):
                logger.exception("identify failed")
            self._reply_error(IDENTIFY, request_id, InternalError("identify failed"))
        finally:
            self.pending = None
        if admission is not None:
            self.device_token = admission.device_token
            identified = self._identified(device_id, admission.device_token)
            self.connection.push(dumps(event_frame(IDENTIFIED, identified)))
            if reply:
                self.connection.push(dumps(response_frame(IDENTIFY, request_id, identified)))
            self._log(IDENTIFY, request_id, Target.GATEWAY, "ok", started_s)
        backlog, self.backlog = self.backlog, []
        for raw in backlog:
            self._handle(raw)

    def _identified(self, device_id: str, device_token: str) -> dict[str, Any]:
        mode = self.gateway.settings.device_auth.value
        return IdentifyReply(device_id=device_id, device_token=device_token, device_auth=mode).model_dump()

    def _bind(self, device_id: str, moved: bool) -> None:
        if self.gateway.manager.identify(self.connection, device_id):
            if moved:  # it was on another gateway, which does not say it left: the lobby hears it here, in order
                self.gateway.notifier.notify(device_id, "device.disconnected")
            self.gateway.notifier.notify(device_id, "device.connected")

    async def _forward(self, target: Target, gate: ServiceGate, message: ClientMessage, started_s: float) -> None:
        device_id = self.connection.device_id
        assert device_id is not None
        try:
            data = await self.gateway.forwarder.forward(
                target, message.event, message.request_id, device_id, message.data
            )
            frame = response_frame(message.event, message.request_id, data)
            outcome = "ok"
        except AppError as exc:
            frame = error_frame(message.event, message.request_id, exc)
            outcome = exc.code.value
        except Exception:
            with bind_context(request_id=message.request_id, device_id=device_id):
                logger.exception("forwarding %s to %s failed", message.event, target)
            frame = error_frame(message.event, message.request_id, InternalError(f"{message.event} failed"))
            outcome = "internal_error"
        finally:
            gate.leave(time.perf_counter() - started_s)
        self.connection.push(dumps(frame))
        self._log(message.event, message.request_id, target, outcome, started_s)

    def _reply_error(
        self, event: str | None, request_id: RequestId, error: AppError, started_s: float | None = None
    ) -> None:
        self.connection.push(dumps(error_frame(event, request_id, error)))
        self._log(event, request_id, None, error.code.value, started_s)

    def _log(
        self, event: str | None, request_id: RequestId, target: Target | None, outcome: str, started_s: float | None
    ) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        duration_ms = (time.perf_counter() - started_s) * 1000 if started_s is not None else 0.0
        with bind_context(request_id=request_id, device_id=self.connection.device_id):
            logger.info("event=%s target=%s outcome=%s duration_ms=%.1f", event, target, outcome, duration_ms)


def _peek(raw: str | bytes) -> tuple[str | None, RequestId]:
    """Event and request id of a message, as far as they can be read (for echoing in an error)."""
    try:
        message = parse_client_message(raw)
    except MessageError as exc:
        return exc.event, exc.request_id
    return message.event, message.request_id


def _drop_websocket_accept_lines(record: logging.LogRecord) -> bool:
    """uvicorn logs every accepted socket; the gateway logs each socket once, with its device, on close."""
    return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'))


async def _backplane_and_registry(
    settings: Settings, manager: ConnectionManager, key: str
) -> tuple[Backplane | None, Registry]:
    """With ``REDIS_URL``: the Redis backplane and the shared registry; else none and the local SQLite file."""
    if not settings.redis_url:
        return None, LocalRegistry(DeviceRegistry(settings.device_registry_path, key_fingerprint(key)))
    from sonalyze_gateway.backplane import Backplane  # only here: no Redis client without REDIS_URL
    from sonalyze_gateway.redis_registry import RedisRegistry

    if settings.device_registry_path is not None:
        logger.info("REDIS_URL is set: issued device ids live in Redis; DEVICE_REGISTRY_PATH is not used")
    backplane = Backplane(
        settings.redis_url,
        settings.redis_key_prefix,
        settings.gateway_id,
        manager,
        settings.backplane_ack_timeout_ms / 1000,
    )
    await backplane.start()
    registry = RedisRegistry(backplane.redis, settings.redis_key_prefix)
    await registry.bind_key(key_fingerprint(key))
    return backplane, registry


async def _settle(gateway: Gateway) -> None:
    """After closing the sockets: let the backplane forget this gateway's devices (bounded wait)."""
    backplane = gateway.backplane
    if backplane is None:
        return
    deadline = time.monotonic() + LISTENER_STOP_S
    while gateway.manager.n_devices and time.monotonic() < deadline:  # noqa: ASYNC110 (receive loops ending)
        await asyncio.sleep(0.02)
    await backplane.settle(max(0.1, deadline - time.monotonic()))
