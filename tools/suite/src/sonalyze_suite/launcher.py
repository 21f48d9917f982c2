"""`Suite`: the five services as child processes on local ports.

Used by ``make run`` (logs streamed with a service prefix) and by the end-to-end tests (logs kept
in files, ports chosen free). Every child gets its own process group, so Ctrl-C reaches only the
launcher, which then stops the children in order and waits for them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final
from urllib.parse import urlsplit

import httpx

from sonalyze_suite.services import SERVICES, ServiceSpec

STOP_GRACE_S: Final = 10.0
TAIL_LINES: Final = 40
# a parent shell's DATABASE_URL would point lobby and storage at one database; each gets its own
INHERITED_ENV_DROPPED: Final = ("DATABASE_URL",)
# where services reach the gateway's /internal/* (never the public port); next to the five services' ports
GATEWAY_INTERNAL_PORT: Final = 8005
GENERATED_SECRET_BYTES: Final = 32
# GATEWAY_REPLICAS > 1: gateway k (0-based) on the gateway's ports + k * this (8000, 8010, ...; 8005, 8015, ...)
REPLICA_PORT_STEP: Final = 10
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
REDIS_CHECK_TIMEOUT_S: Final = 2.0


class ServiceFailed(RuntimeError):
    """A service exited or did not become healthy; the message says which and why."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Free ports are drawn below Linux's ephemeral range (32768-60999): a port the kernel hands out with bind(0)
# is also where outgoing connections get their local ports, so between choosing it and a service binding it
# (or binding it again after a restart) a client socket may take it.
FREE_PORT_RANGE: Final = range(20_000, 32_000)
_port_random = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the range outgoing connections use."""
    for _ in range(100):
        port = _port_random.choice(FREE_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


REPLICATED: Final = ("gateway", "lobby")  # the services that may run as several processes


def gateway_replica_names(replicas: int, service: str = "gateway") -> list[str]:
    """``gateway``, ``gateway-2``, ``gateway-3``, ...: the replicas' names as services (lobby likewise)."""
    return [service] + [f"{service}-{k + 1}" for k in range(1, replicas)]


def replica_index(name: str) -> int | None:
    """0 for ``gateway``/``lobby``, k - 1 for ``gateway-k``/``lobby-k``, None for another service."""
    if name in REPLICATED:
        return 0
    prefix, _, number = name.partition("-")
    return int(number) - 1 if prefix in REPLICATED and number.isdigit() else None


def replica_base(name: str) -> str:
    """The service a replica's name belongs to (``lobby-2`` -> ``lobby``)."""
    return name.partition("-")[0] if replica_index(name) is not None else name


def check_redis(url: str, timeout_s: float = REDIS_CHECK_TIMEOUT_S) -> str | None:
    """None when a Redis server answers ``PING`` at ``url``; else what went wrong, for the user."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("redis", "rediss"):
        return f"REDIS_URL must start with redis:// (got {url!r})"
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if parsed.scheme == "rediss":
                return None  # TLS: leave the handshake to the gateways
            if parsed.password:
                user = parsed.username or "default"
                sock.sendall(f"AUTH {user} {parsed.password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return f"Redis at {host}:{port} refused the credentials in REDIS_URL"
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"Redis is not reachable at {host}:{port} (REDIS_URL): {exc}"
    if not answer.startswith(b"+PONG"):
        return f"Redis at {host}:{port} answered {answer[:40]!r} to PING"
    return None


@dataclass
class SuiteConfig:
    """Where each service listens and what it is told. Defaults are those of ``make run``."""

    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: {s.name: s.default_port for s in SERVICES})
    data_dir: Path = Path("measurement_data")
    state_dir: Path = Path(".run")
    lobby_database_url: str | None = None
    storage_database_url: str | None = None
    # None: a random token for this run, handed to every service; "": none at all (nothing authenticates)
    internal_auth_token: str | None = None
    log_level: str = "INFO"
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    services: tuple[str, ...] = tuple(s.name for s in SERVICES)
    gateway_internal_port: int = GATEWAY_INTERNAL_PORT
    device_auth: str = "claim"
    # None: a random key for this run (credentials then last as long as the run)
    device_token_key: str | None = None
    # GATEWAY_REPLICAS: gateways sharing a Redis backplane (more than one needs redis_url)
    gateway_replicas: int = 1
    redis_url: str | None = None
    redis_key_prefix: str | None = None  # None: the gateway's default
    # LOBBY_REPLICAS: lobbies on one PostgreSQL database (ports 8001, 8011, ...), one coordinator per session
    lobby_replicas: int = 1
    internal_ports: dict[str, int] = field(default_factory=dict)  # replicas' internal ports, when not stepped
    token_generated: bool = field(init=False, default=False)
    key_generated: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.token_generated = self.internal_auth_token is None
        if self.internal_auth_token is None:
            self.internal_auth_token = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
        self.key_generated = self.device_token_key is None
        if self.device_token_key is None:
            self.device_token_key = secrets.token_urlsafe(GENERATED_SECRET_BYTES)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> SuiteConfig:
        """Defaults overridden by the variables a developer may set for ``make run``."""
        config = cls(
            data_dir=Path(env.get("MEASUREMENT_DATA_DIR", "measurement_data")),
            lobby_database_url=env.get("LOBBY_DATABASE_URL") or None,
            storage_database_url=env.get("STORAGE_DATABASE_URL") or None,
            internal_auth_token=env.get("INTERNAL_AUTH_TOKEN") or None,
            log_level=env.get("LOG_LEVEL", "INFO"),
            device_auth=env.get("DEVICE_AUTH") or "claim",
            device_token_key=env.get("DEVICE_TOKEN_KEY") or None,
            gateway_replicas=int(env.get("GATEWAY_REPLICAS") or 1),
            redis_url=env.get("REDIS_URL") or None,
            redis_key_prefix=env.get("REDIS_KEY_PREFIX") or None,
            lobby_replicas=int(env.get("LOBBY_REPLICAS") or 1),
        )
        if config.lobby_replicas < 1:
            raise ValueError(f"LOBBY_REPLICAS must be at least 1, got {config.lobby_replicas}")
        if config.gateway_replicas < 1:
            raise ValueError(f"GATEWAY_REPLICAS must be at least 1, got {config.gateway_replicas}")
        if config.gateway_replicas > 1 and not config.redis_url:
            config.redis_url = DEFAULT_REDIS_URL
        for spec in SERVICES:
            if port := env.get(f"{spec.name.upper()}_PORT"):
                config.ports[spec.name] = int(port)
        if port := env.get("GATEWAY_INTERNAL_PORT"):
            config.gateway_internal_port = int(port)
        return config

    @classmethod
    def on_free_ports(cls, **kwargs: object) -> SuiteConfig:
        config = cls(**kwargs)  # type: ignore[arg-type]
        config.ports = {s.name: free_port(config.host) for s in SERVICES}
        config.gateway_internal_port = free_port(config.host)
        for name in config.gateway_names[1:]:
            config.ports[name] = free_port(config.host)
            config.internal_ports[name] = free_port(config.host)
        for name in config.lobby_names[1:]:
            config.ports[name] = free_port(config.host)
        return config

    @property
    def gateway_names(self) -> list[str]:
        return gateway_replica_names(self.gateway_replicas)

    @property
    def lobby_names(self) -> list[str]:
        return gateway_replica_names(self.lobby_replicas, "lobby")

    @property
    def started_services(self) -> tuple[str, ...]:
        """``services`` with ``gateway`` and ``lobby`` each followed by its replicas."""
        names: list[str] = []
        for name in self.services:
            replicas = {"gateway": self.gateway_names, "lobby": self.lobby_names}
            names.extend(replicas.get(name, [name]))
        return tuple(names)

    def lobby_database_problem(self) -> str | None:
        """Why the lobby replicas cannot share the configured database (None: they can)."""
        if self.lobby_replicas > 1 and not (self.lobby_database_url or "").startswith("postgresql"):
            return (
                f"LOBBY_REPLICAS={self.lobby_replicas} needs one PostgreSQL database for all lobbies: set "
                "LOBBY_DATABASE_URL=postgresql+asyncpg://user@host:5432/dbname (a SQLite file cannot be shared)"
            )
        return None

    def port(self, service: str) -> int:
        if service in self.ports:
            return self.ports[service]
        index = replica_index(service)
        if index is None:
            raise KeyError(service)
        return self.ports[replica_base(service)] + REPLICA_PORT_STEP * index

    def internal_port(self, gateway: str = "gateway") -> int:
        if gateway == "gateway":
            return self.gateway_internal_port
        if gateway in self.internal_ports:
            return self.internal_ports[gateway]
        index = replica_index(gateway)
        if index is None:
            raise KeyError(gateway)
        return self.gateway_internal_port + REPLICA_PORT_STEP * index

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.port(service)}"

    def gateway_urls(self) -> list[str]:
        """The public URL of each gateway."""
        return [self.url(name) for name in self.gateway_names]

    @property
    def gateway_internal_url(self) -> str:
        """The gateway's internal listener (``/internal/*``): what services get as ``GATEWAY_URL``."""
        return f"http://{self.host}:{self.gateway_internal_port}"

    def internal_url(self, gateway: str = "gateway") -> str:
        return f"http://{self.host}:{self.internal_port(gateway)}"

    @property
    def services_gateway_url(self) -> str:
        """``GATEWAY_URL`` of the services: every gateway's internal listener (the broadcast client fails over)."""
        return ",".join(self.internal_url(name) for name in self.gateway_names)

    def sqlite_url(self, name: str) -> str:
        return f"sqlite+aiosqlite:///{(self.state_dir / f'{name}.db').resolve()}"

    def service_env(self, spec: ServiceSpec, name: str | None = None) -> dict[str, str]:
        """The environment one service (``name``: a gateway replica) starts with: every ``*_URL`` points at the local ports."""
        name = name or spec.name
        urls = {
            "GATEWAY_URL": self.services_gateway_url,
            "LOBBY_URL": ",".join(self.url(lobby) for lobby in self.lobby_names),
            "MEASUREMENT_URL": self.url("measurement"),
            "SIMULATION_URL": self.url("simulation"),
            "STORAGE_URL": self.url("storage"),
        }
        env = {**urls, "LOG_LEVEL": self.log_level, "PYTHONUNBUFFERED": "1"}
        if self.internal_auth_token:
            env["INTERNAL_AUTH_TOKEN"] = self.internal_auth_token
        if spec.name == "gateway":
            env["INTERNAL_HOST"] = self.host
            env["INTERNAL_PORT"] = str(self.internal_port(name))
            env["DEVICE_AUTH"] = self.device_auth
            env["DEVICE_TOKEN_KEY"] = self.device_token_key or ""
            if self.redis_url:  # the registry is shared in Redis
                env["REDIS_URL"] = self.redis_url
                if self.redis_key_prefix:
                    env["REDIS_KEY_PREFIX"] = self.redis_key_prefix
            else:
                env["DEVICE_REGISTRY_PATH"] = str((self.state_dir / "gateway-devices.sqlite3").resolve())
        elif spec.name == "lobby":
            env["DATABASE_URL"] = self.lobby_database_url or self.sqlite_url("lobby")
            env.setdefault("RUN_MIGRATIONS", "true")
            if self.lobby_replicas > 1:  # replica k > 1 starts once the first has migrated the database
                env["REPLICA_ID"] = name
                env["REPLICA_URL"] = self.url(name)
                if name != spec.name:
                    env["RUN_MIGRATIONS"] = "false"
        elif spec.name == "storage":
            env["DATABASE_URL"] = self.storage_database_url or self.sqlite_url("storage")
            env.setdefault("RUN_MIGRATIONS", "true")
            env["OUTBOX_DIR"] = str((self.state_dir / "outbox").resolve())
        elif spec.name == "measurement":
            env["MEASUREMENT_DATA_DIR"] = str(self.data_dir.resolve())
        # a second gateway keeps its own queue (one SQLite outbox file per process, same name in each)
        outbox = self.state_dir / "outbox" if name == spec.name else self.state_dir / "outbox" / name
        env.setdefault("OUTBOX_DIR", str(outbox.resolve()))
        env.update(self.extra_env.get(spec.name, {}))
        if name != spec.name:
            env.update(self.extra_env.get(name, {}))
        return env


def _spec_of(name: str) -> ServiceSpec:
    """The spec of a service, or of the gateway for a replica (``gateway-2``)."""
    spec = next((s for s in SERVICES if s.name == name), None)
    if spec is None and replica_index(name) is not None:
        spec = next(s for s in SERVICES if s.name == replica_base(name))
    if spec is None:
        raise KeyError(f"no service named {name!r}")
    return spec


class _Child:
    """One running service: its process, a tail of its output, and where the output goes."""

    def __init__(self, spec: ServiceSpec, process: subprocess.Popen[bytes], sink: Callable[[str], None]) -> None:
        self.spec = spec
        self.process = process
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._sink = sink
        self._reader = threading.Thread(target=self._pump, name=f"log-{spec.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            self._sink(line)

    def join_output(self, timeout_s: float = 2.0) -> None:
        self._reader.join(timeout_s)


class Suite:
    """Start the configured services, wait until all are healthy, stop them all."""

    def __init__(
        self,
        config: SuiteConfig,
        *,
        python: str = sys.executable,
        log_dir: Path | None = None,
        echo: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.python = python
        self.log_dir = log_dir
        self.echo = echo
        self.children: dict[str, _Child] = {}
        self._echo_lock = threading.Lock()
        self._log_files: list[IO[str]] = []

    def _sink_for(self, name: str) -> Callable[[str], None]:
        width = max(len(n) for n in (*(s.name for s in SERVICES), *self.config.gateway_names, *self.config.lobby_names))
        prefix = f"{name:<{width}} | "
        log_file = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = open(self.log_dir / f"{name}.log", "a", buffering=1)  # noqa: SIM115
            self._log_files.append(log_file)

        def sink(line: str) -> None:
            if log_file is not None:
                log_file.write(line + "\n")
            if self.echo is not None:
                with self._echo_lock:
                    self.echo.write(prefix + line + "\n")
                    self.echo.flush()

        return sink

    def start_service(self, name: str) -> None:
        spec = _spec_of(name)
        is_gateway = spec.name == "gateway"
        ports = [self.config.port(name)] + ([self.config.internal_port(name)] if is_gateway else [])
        for port in ports:
            if not port_is_free(self.config.host, port):
                raise ServiceFailed(
                    f"{name}: port {port} on {self.config.host} is already in use (another suite running?)"
                )
        port = self.config.port(name)
        env = {k: v for k, v in os.environ.items() if k not in INHERITED_ENV_DROPPED}
        env.update(self.config.service_env(spec, name))
        command = [
            self.python, "-m", "uvicorn", "--factory", spec.factory,
            "--host", self.config.host, "--port", str(port),
            "--timeout-graceful-shutdown", "5", "--no-access-log", *spec.uvicorn_args,
            *(spec.env_args(env) if spec.env_args else ()),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children[name] = _Child(spec, process, self._sink_for(name))

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every configured service and wait for health; on failure stop the rest and raise."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if (
                self.config.redis_url
                and "gateway" in self.config.services
                and (problem := check_redis(self.config.redis_url))
            ):
                raise ServiceFailed(
                    f"gateway: {problem}. Several gateways (GATEWAY_REPLICAS > 1) share a Redis backplane: "
                    "start Redis (redis-server) or point REDIS_URL at one"
                )
            if "lobby" in self.config.services and (problem := self.config.lobby_database_problem()):
                raise ServiceFailed(f"lobby: {problem}")
            later = self.config.lobby_names[1:]  # after the first lobby has migrated the database
            first = [name for name in self.config.started_services if name not in later]
            for name in first:
                self.start_service(name)
            self.wait_healthy(first, timeout_s)
            for name in later:
                self.start_service(name)
            self.wait_healthy(later, timeout_s)
        except BaseException:
            self.stop()
            raise

    def health_url(self, name: str) -> str:
        return self.config.url(name) + _spec_of(name).health_path

    def wait_healthy(self, names: Iterable[str], timeout_s: float = 60.0) -> None:
        pending = list(names)
        deadline = time.monotonic() + timeout_s
        last_error: dict[str, str] = {}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in list(pending):
                    child = self.children[name]
                    if (code := child.process.poll()) is not None:
                        child.join_output()
                        raise ServiceFailed(f"{name} exited with code {code} while starting:\n" + self._tail(name))
                    try:
                        response = client.get(self.health_url(name))
                        if response.status_code == 200:
                            pending.remove(name)
                            continue
                        last_error[name] = f"health answered {response.status_code}: {response.text[:300]}"
                    except httpx.HTTPError as exc:
                        last_error[name] = f"health not answering ({type(exc).__name__})"
                if not pending:
                    break
                if time.monotonic() > deadline:
                    details = "\n".join(f"{n}: {last_error.get(n, 'no answer')}\n{self._tail(n)}" for n in pending)
                    raise ServiceFailed(f"not healthy after {timeout_s:.0f}s: {', '.join(pending)}\n{details}")
                time.sleep(0.1)

    def _tail(self, name: str) -> str:
        return "\n".join(f"    {line}" for line in self.children[name].tail)

    def stop_service(self, name: str, grace_s: float = STOP_GRACE_S) -> int | None:
        child = self.children.pop(name, None)
        if child is None:
            return None
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        _kill_group(child.process.pid)
        child.join_output()
        return child.process.returncode

    def kill_service(self, name: str) -> None:
        """Kill without grace (a crash, for fault tests): the service and every process it started."""
        child = self.children.pop(name, None)
        if child is not None:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
            _kill_group(child.process.pid)

    def stop(self) -> None:
        """Stop in reverse start order: the gateway first, so no new work arrives."""
        for name in reversed(list(self.children)):
            self.stop_service(name)
        for log_file in self._log_files:
            log_file.close()
        self._log_files.clear()

    def exited(self) -> dict[str, int]:
        """Services that have exited on their own, with their exit codes."""
        return {n: c.process.returncode for n, c in self.children.items() if c.process.poll() is not None}

    def __enter__(self) -> Suite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(pgid: int) -> None:
    """End what a service left behind in its process group (pool workers, a resource tracker).

    Each service starts in a session of its own (``start_new_session``), so its group holds exactly its own
    processes; a worker still computing after its service stopped would otherwise run on as an orphan.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
