"""`Suite`: the five services as child processes on local ports.

Used by ``make run`` (logs streamed with a service prefix) and by the end-to-end tests (logs kept
in files, ports chosen free). Every child gets its own process group, so Ctrl-C reaches only the
launcher, which then stops the children in order and waits for them.
"""

from __future__ import annotations

import collections
import contextlib
import os
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

import httpx

from sonalyze_suite.services import SERVICES, ServiceSpec

STOP_GRACE_S: Final = 10.0
TAIL_LINES: Final = 40
# a parent shell's DATABASE_URL would point lobby and storage at one database; each gets its own
INHERITED_ENV_DROPPED: Final = ("DATABASE_URL",)
# where services reach the gateway's /internal/* (never the public port); next to the five services' ports
GATEWAY_INTERNAL_PORT: Final = 8005
GENERATED_SECRET_BYTES: Final = 32


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
        )
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
        return config

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def gateway_internal_url(self) -> str:
        """The gateway's internal listener (``/internal/*``): what services get as ``GATEWAY_URL``."""
        return f"http://{self.host}:{self.gateway_internal_port}"

    def sqlite_url(self, name: str) -> str:
        return f"sqlite+aiosqlite:///{(self.state_dir / f'{name}.db').resolve()}"

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The environment one service starts with: every ``*_URL`` points at the local ports."""
        urls = {
            "GATEWAY_URL": self.gateway_internal_url,
            "LOBBY_URL": self.url("lobby"),
            "MEASUREMENT_URL": self.url("measurement"),
            "SIMULATION_URL": self.url("simulation"),
            "STORAGE_URL": self.url("storage"),
        }
        env = {**urls, "LOG_LEVEL": self.log_level, "PYTHONUNBUFFERED": "1"}
        if self.internal_auth_token:
            env["INTERNAL_AUTH_TOKEN"] = self.internal_auth_token
        if spec.name == "gateway":
            env["INTERNAL_HOST"] = self.host
            env["INTERNAL_PORT"] = str(self.gateway_internal_port)
            env["DEVICE_AUTH"] = self.device_auth
            env["DEVICE_TOKEN_KEY"] = self.device_token_key or ""
            env["DEVICE_REGISTRY_PATH"] = str((self.state_dir / "gateway-devices.sqlite3").resolve())
        elif spec.name == "lobby":
            env["DATABASE_URL"] = self.lobby_database_url or self.sqlite_url("lobby")
            env.setdefault("RUN_MIGRATIONS", "true")
        elif spec.name == "storage":
            env["DATABASE_URL"] = self.storage_database_url or self.sqlite_url("storage")
            env.setdefault("RUN_MIGRATIONS", "true")
            env["OUTBOX_DIR"] = str((self.state_dir / "outbox").resolve())
        elif spec.name == "measurement":
            env["MEASUREMENT_DATA_DIR"] = str(self.data_dir.resolve())
        env.setdefault("OUTBOX_DIR", str((self.state_dir / "outbox").resolve()))
        env.update(self.extra_env.get(spec.name, {}))
        return env


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
        width = max(len(s.name) for s in SERVICES)
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
        spec = next(s for s in SERVICES if s.name == name)
        ports = [self.config.ports[name]] + ([self.config.gateway_internal_port] if name == "gateway" else [])
        for port in ports:
            if not port_is_free(self.config.host, port):
                raise ServiceFailed(
                    f"{name}: port {port} on {self.config.host} is already in use (another suite running?)"
                )
        port = self.config.ports[name]
        env = {k: v for k, v in os.environ.items() if k not in INHERITED_ENV_DROPPED}
        env.update(self.config.service_env(spec))
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
            for name in self.config.services:
                self.start_service(name)
            self.wait_healthy(self.config.services, timeout_s)
        except BaseException:
            self.stop()
            raise

    def health_url(self, name: str) -> str:
        spec = next(s for s in SERVICES if s.name == name)
        return self.config.url(name) + spec.health_path

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
