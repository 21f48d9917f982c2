"""``make compose-test``: the suite as ``docker compose`` runs it, checked through the published gateway only.

Steps (each printed with its time): Docker up (with the machine set-up scripts when ``docker info`` fails),
build, ``up`` until healthy, health, signal download, the README's simulation example, a WebSocket lobby,
whole virtual-phone sessions (``python -m sonalyze_devices``, every dialect it offers), ``down`` + ``up``
and the job and lobby are still there, ``down -v`` leaving no container, network or volume.

Then (``--stack both``, the default; ``--stack replicas`` alone) the replicated layout, the default file plus
``docker-compose.replicas.yml``, through nginx's published port only: sockets spread over both gateways
(each gateway's ``/healthz``, read inside its container), a push through each gateway's internal API reaches
the phones on the other, ``docker compose stop gateway-2`` closes its phones with 1012 and they are admitted
again, with their credentials, on the other; gateway-2 back and nginx spreads again; a virtual-phone session
whose pushes cross the backplane; ``down`` + ``up`` and Redis kept the issued device ids (a credential is
still admitted). ``COMPOSE_TEST_PROJECT`` names the compose project (two runs side by side).

Docker set-up: on a machine without an image registry (like the development VMs), the scripts in
``shared/tools/docker`` install Debian's dockerd, the compose plugin and stand-in base images. They are
machine set-up, not product: found through ``SONALYZE_DOCKER_TOOLS`` or in a ``shared/tools/docker`` folder
beside one of this repository's parent folders. A dockerd this script started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sonalyze_devices.client import DeviceClient
from sonalyze_suite.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
SPREAD_AGAIN_WAIT_S = 10.0  # twice nginx's fail_timeout for a gateway (deploy/nginx/nginx.conf)
PROJECT = os.environ.get("COMPOSE_TEST_PROJECT", "sonalyze-compose-test")  # another name: runs side by side
BASE_IMAGES = ("python:3.11-slim", "postgres:16-alpine")
SINGLE = ("docker-compose.yml",)
REPLICAS = ("docker-compose.yml", "docker-compose.replicas.yml")
GATEWAYS = ("gateway", "gateway-2")
WORK = Path(os.environ.get("WORK", Path(os.environ.get("TMPDIR", "/tmp")) / "sonalyze-compose-work"))
SIMULATION_EXAMPLE: dict[str, Any] = {  # README "Talking to it"
    "room": {"type": "shoebox", "dimensions_m": [5.0, 4.0, 2.5], "default_material": {"absorption": 0.2}},
    "sources": [{"id": "s1", "position_m": [2.5, 0.5, 1.2]}],
    "microphones": [{"id": "m1", "position_m": [2.5, 3.5, 1.2]}],
}
T = TypeVar("T")


class CheckFailed(Exception):
    pass


class Steps:
    """Runs named steps, prints each with its duration and the time since the start."""

    def __init__(self) -> None:
        self.start_s = time.monotonic()
        self.durations_s: dict[str, float] = {}

    def run(self, name: str, action: Callable[[], T]) -> T:
        print(f"[{time.monotonic() - self.start_s:7.1f} s] {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            result = action()
        except Exception as exc:
            print(
                f"[{time.monotonic() - self.start_s:7.1f} s] {name}: FAILED after {time.monotonic() - t0:.1f} s: {exc}",
                flush=True,
            )
            raise
        self.durations_s[name] = time.monotonic() - t0
        detail = f" ({result})" if isinstance(result, str) and result and "\n" not in result else ""
        print(
            f"[{time.monotonic() - self.start_s:7.1f} s] {name}: ok in {self.durations_s[name]:.1f} s{detail}",
            flush=True,
        )
        return result


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def sh(*args: str, env: dict[str, str] | None = None, quiet: bool = False, timeout_s: float = 1800) -> str:
    """Run a command; its output is shown unless ``quiet`` (then it is only shown when it fails)."""
    proc = subprocess.run(
        args, env=env, cwd=ROOT, text=True, timeout=timeout_s, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if proc.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:4])} ... exited {proc.returncode}:\n{proc.stdout[-4000:]}")
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


def docker_ok(env: dict[str, str]) -> bool:
    ok = subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0
    return ok and subprocess.run(["docker", "compose", "version"], env=env, capture_output=True).returncode == 0


def find_machine_scripts() -> Path | None:
    if explicit := os.environ.get("SONALYZE_DOCKER_TOOLS"):
        return Path(explicit)
    for parent in ROOT.parents:
        candidate = parent / "shared" / "tools" / "docker"
        if (candidate / "setup_docker.sh").is_file():
            return candidate
    return None


class Docker:
    """Docker for this run: the machine's own, or one started with the set-up scripts (stopped at the end)."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        if (WORK / "dockercfg" / "cli-plugins").is_dir() and "DOCKER_CONFIG" not in self.env:
            self.env["DOCKER_CONFIG"] = str(WORK / "dockercfg")
        self.scripts = find_machine_scripts()
        self.started = False

    def can_start(self) -> tuple[bool, str]:
        """Whether Docker answers, or can be set up here with the machine scripts (root, Debian's apt)."""
        if docker_ok(self.env):
            return True, "docker answers"
        if self.scripts is None:
            return False, "docker does not answer and no machine set-up scripts (shared/tools/docker) were found"
        if os.geteuid() != 0:
            return False, "docker does not answer and setting it up needs root"
        if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
            return False, "docker does not answer and neither dockerd nor apt-get is installed"
        return True, f"docker can be set up with {self.scripts}"

    def ensure(self) -> str:
        if docker_ok(self.env):
            self.make_base_images(only_if_missing=True)
            return "already running"
        if self.scripts is None or shutil.which("bash") is None:
            raise CheckFailed(
                "docker does not answer and no machine set-up scripts were found "
                "(set SONALYZE_DOCKER_TOOLS to the folder of setup_docker.sh)"
            )
        sh("bash", str(self.scripts / "setup_docker.sh"), env={**self.env, "WORK": str(WORK)}, quiet=True)
        self.env["DOCKER_CONFIG"] = str(WORK / "dockercfg")
        self.started = True
        check(docker_ok(self.env), "docker still does not answer after setup_docker.sh")
        self.make_base_images(only_if_missing=True)
        return f"started with {self.scripts}/setup_docker.sh"

    def make_base_images(self, only_if_missing: bool) -> None:
        missing = [
            image
            for image in BASE_IMAGES
            if subprocess.run(["docker", "image", "inspect", image], env=self.env, capture_output=True).returncode != 0
        ]
        if missing and self.scripts is not None:
            print(f"  base images missing ({', '.join(missing)}): make_base_images.sh", flush=True)
            sh("bash", str(self.scripts / "make_base_images.sh"), env={**self.env, "WORK": str(WORK)}, quiet=True)

    def stop_if_started(self) -> str:
        if not self.started or self.scripts is None:
            return "left running (it was not started here)"
        sh(
            "bash",
            str(self.scripts / "teardown.sh"),
            env={**self.env, "WORK": str(WORK), "CLONE": "/nonexistent"},
            quiet=True,
        )
        return "stopped"


class Compose:
    def __init__(self, docker: Docker, gateway_port: int, files: tuple[str, ...] = SINGLE) -> None:
        self.docker = docker
        self.files = files
        self.env = {
            **docker.env,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "GATEWAY_BIND": "127.0.0.1",
            "GATEWAY_PORT": str(gateway_port),
            "INTERNAL_AUTH_TOKEN": secrets.token_hex(24),
            # the replicated layout requires one signing key for both gateways
            "DEVICE_TOKEN_KEY": secrets.token_urlsafe(32),
            # this checks wiring, not latency: on a shared, loaded machine a hybrid simulation may take longer
            # than the gateway's 30 s timeout and the simulation's 28 s deadline, failing the phones that wait
            "HTTP_TIMEOUT_SECONDS": os.environ.get("HTTP_TIMEOUT_SECONDS", "120"),
            "SIMULATION_DEADLINE_S": os.environ.get("SIMULATION_DEADLINE_S", "110"),
        }

    def __call__(self, *args: str, quiet: bool = True, timeout_s: float = 1800) -> str:
        files = [arg for name in self.files for arg in ("-f", name)]
        return sh(
            "docker", "compose", "--project-directory", str(ROOT), *files, *args,
            env=self.env, quiet=quiet, timeout_s=timeout_s,
        )  # fmt: skip

    def with_files(self, files: tuple[str, ...]) -> Compose:
        """The same project, port and secrets with other compose files."""
        other = Compose(self.docker, int(self.env["GATEWAY_PORT"]), files)
        other.env = self.env
        return other

    def build(self) -> str:
        self("build", timeout_s=3600)
        return image_sizes(self)

    def up_until_healthy(self) -> str:
        self("up", "--detach", "--wait", "--wait-timeout", "300", timeout_s=400)
        states = self.states()
        unhealthy = {name: state for name, state in states.items() if state != "healthy"}
        check(not unhealthy, f"not healthy: {unhealthy}")
        return f"{len(states)} containers healthy"

    def states(self) -> dict[str, str]:
        out = self("ps", "--all", "--format", "json")
        rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        if len(rows) == 1 and isinstance(rows[0], list):  # older compose prints one JSON array
            rows = rows[0]
        return {row["Service"]: row.get("Health") or row.get("State", "?") for row in rows}

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={PROJECT}"
        found = {}
        for kind, cmd in (
            ("containers", ["ps", "--all"]),
            ("networks", ["network", "ls"]),
            ("volumes", ["volume", "ls"]),
        ):
            out = sh("docker", *cmd, "--quiet", "--filter", label, env=self.env, quiet=True)
            found[kind] = out.split()
        return found


def image_sizes(compose: Compose) -> str:
    out = sh("docker", "images", "--format", "{{.Repository}} {{.Size}}", env=compose.env, quiet=True)
    sizes = [line.split(" ", 1) for line in out.splitlines() if line.startswith(PROJECT + "-")]
    return ", ".join(f"{name.removeprefix(PROJECT + '-')} {size}" for name, size in sorted(sizes))


# ------------------------------------------------------------------ checks through the gateway


def check_health(http: httpx.Client) -> str:
    response = http.get("/healthz")
    check(response.status_code == 200, f"/healthz answered {response.status_code}")
    return response.text[:80]


def check_signal(http: httpx.Client) -> str:
    response = http.get("/v1/measurement/audio", params={"sample_rate": 48000})
    check(response.status_code == 200, f"signal download answered {response.status_code}: {response.text[:200]}")
    check(response.content[:4] == b"RIFF" and response.content[8:12] == b"WAVE", "the signal is not a WAV")
    return f"{len(response.content)} bytes of WAV"


def check_simulation(http: httpx.Client) -> str:
    response = http.post("/v1/simulation/simulate", json=SIMULATION_EXAMPLE, timeout=120)
    check(response.status_code == 200, f"simulate answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    check(bool(body.get("simulation_id")), f"no simulation_id in {str(body)[:300]}")
    return f"simulation {body['simulation_id']}"


async def create_lobby(ws_url: str, device_id: str) -> dict[str, Any]:
    client = DeviceClient(ws_url, device_id)
    await client.connect()
    try:
        lobby = await client.request("lobby.create", {})
        check(bool(lobby.get("lobby_id")) and bool(lobby.get("code")), f"lobby.create answered {lobby}")
        return lobby
    finally:
        await client.close()


async def get_lobby(ws_url: str, device_id: str, lobby_id: str) -> dict[str, Any]:
    client = DeviceClient(ws_url, device_id)
    await client.connect()
    try:
        return await client.request("lobby.get", {"lobby_id": lobby_id})
    finally:
        await client.close()


def devices_dialects() -> list[str | None]:
    """The dialects the virtual phones speak (``--dialect`` once they have it)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "sonalyze_devices", "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    if "--dialect" not in help_text:
        return [None]
    match = re.search(r"--dialect \{([^}]*)\}", help_text)
    return [d.strip() for d in match.group(1).split(",")] if match else [None]


def run_devices(ws_url: str, dialect: str | None) -> str:
    args = [sys.executable, "-m", "sonalyze_devices", "--gateway", ws_url, "--timeout", "300"]
    if dialect:
        args += ["--dialect", dialect]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=400)
    output = proc.stdout + proc.stderr
    check(proc.returncode == 0, f"sonalyze_devices exited {proc.returncode}:\n{output[-3000:]}")
    check("starting the local suite" not in output, "sonalyze_devices did not find the compose gateway")
    match = re.search(r"\(job ([^)\s]+)\)", output)
    check(match is not None, f"no job id in the devices' output:\n{output[-2000:]}")
    return match.group(1)  # type: ignore[union-attr]


def check_job(http: httpx.Client, job_id: str) -> str:
    response = http.get(f"/v1/jobs/{job_id}")
    check(response.status_code == 200, f"GET /v1/jobs/{job_id} answered {response.status_code}")
    job = response.json()
    uploads = job.get("uploads") or []
    check(len(uploads) > 0, f"job {job_id} has no uploads: {str(job)[:300]}")
    analysis = job.get("analysis") or {}
    check(analysis.get("state") == "done", f"job {job_id}: analysis is {analysis.get('state')!r}")
    return f"{len(uploads)} uploads, analysis done"


# ------------------------------------------------------------------ two gateways behind nginx (REPLICAS)

# run inside a gateway container (no curl there): GET, or POST a JSON body, with the internal token
_IN_CONTAINER = """
import os, sys, urllib.error, urllib.request
body = sys.argv[2].encode() or None
headers = {"Content-Type": "application/json", "X-Internal-Token": os.environ.get("INTERNAL_AUTH_TOKEN", "")}
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], body, headers), timeout=20) as response:
        print(response.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.read().decode())
"""


def in_gateway(compose: Compose, service: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request from inside a gateway's container (its /healthz, its internal API: neither is published)."""
    payload = json.dumps(body) if body is not None else ""
    out = compose("exec", "-T", service, "python", "-c", _IN_CONTAINER, url, payload, timeout_s=60)
    return dict(json.loads(out.strip().splitlines()[-1]))


def gateways_health(compose: Compose, names: tuple[str, ...] = GATEWAYS) -> dict[str, dict[str, Any]]:
    return {name: in_gateway(compose, name, "http://127.0.0.1:8000/healthz") for name in names}


def push_via(compose: Compose, service: str, device_ids: list[str], event: str) -> dict[str, Any]:
    """``/internal/broadcast`` on one gateway's internal listener."""
    body = {"device_ids": device_ids, "event": event, "data": {}}
    return in_gateway(compose, service, "http://127.0.0.1:8001/internal/broadcast", body)


async def _event(ws: Any, name: str, timeout_s: float = 15) -> dict[str, Any]:
    """The next frame with this event (other frames skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if frame.get("event") == name:
            return dict(frame.get("data") or {})


async def _open(ws_url: str, device_id: str, token: str | None = None) -> tuple[Any, str]:
    query = f"?device_id={device_id}" + (f"&device_token={token}" if token else "")
    ws = await connect(ws_url + query, open_timeout=15)
    try:
        return ws, str((await _event(ws, "gateway.identified"))["device_token"])
    except ConnectionClosed as exc:
        raise CheckFailed(f"{device_id}{' with its credential' if token else ''} was refused: {exc}") from exc


async def _push_reaches_all(compose: Compose, service: str, devices: list[str], sockets: list[Any]) -> None:
    event = f"compose.replicas.via.{service}"
    result = await asyncio.to_thread(push_via, compose, service, devices, event)
    check(sorted(result.get("delivered") or []) == sorted(devices), f"push via {service}'s internal API: {result}")
    await asyncio.gather(*(_event(ws, event) for ws in sockets))


class ReplicaCheck:
    """Sockets through nginx spread over both gateways, pushes across them, gateway-2 drained, Redis kept."""

    def __init__(self, compose: Compose, ws_url: str) -> None:
        self.compose = compose
        self.ws_url = ws_url
        self.tokens: dict[str, str] = {}

    async def spread_push_drain(self) -> str:
        devices = [f"replica-{uuid.uuid4().hex[:8]}-{i}" for i in range(6)]
        sockets = []
        try:
            for device in devices:
                ws, self.tokens[device] = await _open(self.ws_url, device)
                sockets.append(ws)
            health = await asyncio.to_thread(gateways_health, self.compose)
            spread = {name: h["devices"] for name, h in health.items()}
            check(min(spread.values()) >= 1 and sum(spread.values()) == len(devices), f"not spread: {spread}")
            check(len({h["gateway_id"] for h in health.values()}) == 2, f"one backplane id twice: {health}")
            for service in GATEWAYS:  # each gateway's internal API reaches the other's devices
                await _push_reaches_all(self.compose, service, devices, sockets)
            figures = {n: h["backplane"] for n, h in (await asyncio.to_thread(gateways_health, self.compose)).items()}
            check(all(f["remote_pushes"] >= 1 and f["served_pushes"] >= 1 for f in figures.values()), str(figures))

            t0 = time.monotonic()
            await asyncio.to_thread(self.compose, "stop", "gateway-2")
            stopped_s = time.monotonic() - t0
            await asyncio.sleep(0.5)
            codes = [ws.close_code for ws in sockets]
            moved = [i for i, code in enumerate(codes) if code is not None]
            check(
                len(moved) == spread["gateway-2"] and {codes[i] for i in moved} == {1012},
                f"after stopping gateway-2 ({spread}) the sockets' close codes are {codes}",
            )
            reconnect_s = []  # one after the other: the first may wait out nginx's connect timeout on gateway-2
            for i in moved:
                t1 = time.monotonic()
                sockets[i], _ = await _open(self.ws_url, devices[i], self.tokens[devices[i]])
                reconnect_s.append(time.monotonic() - t1)
            left = in_gateway(self.compose, "gateway", "http://127.0.0.1:8000/healthz")
            check(left["devices"] == len(devices), f"gateway holds {left['devices']} of {len(devices)} devices")
            await _push_reaches_all(self.compose, "gateway", devices, sockets)
        finally:
            for ws in sockets:
                await ws.close()
        return (
            f"spread {spread}; pushes via each reached all {len(devices)}; stop gateway-2 {stopped_s:.1f} s, "
            f"its {len(moved)} phones closed 1012 and back through nginx in {', '.join(f'{t:.2f}' for t in reconnect_s)} s"
        )

    async def spread_again(self) -> str:
        """nginx reaches the restarted gateway-2 (a new container IP would leave it a stale upstream)."""
        sockets = []
        # nginx tries a gateway it saw fail again only after the upstream's fail_timeout (5 s): new sockets
        # are opened until one lands on gateway-2, for at most twice that
        deadline = time.monotonic() + SPREAD_AGAIN_WAIT_S
        try:
            while True:
                ws, _ = await _open(self.ws_url, f"replica-again-{uuid.uuid4().hex[:8]}")
                sockets.append(ws)
                health = await asyncio.to_thread(gateways_health, self.compose)
                spread = {n: h["devices"] for n, h in health.items()}
                if min(spread.values()) >= 1 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            for ws in sockets:
                await ws.close()
        check(min(spread.values()) >= 1, f"not spread after gateway-2 came back: {spread}")
        return f"spread {spread}"

    def served_pushes(self) -> int:
        """Pushes a gateway delivered for the other one (a service's push to a phone on the other gateway)."""
        return sum(h["backplane"]["served_pushes"] for h in gateways_health(self.compose).values())

    def registry_size(self) -> int:
        out = self.compose("exec", "-T", "redis", "redis-cli", "HLEN", "sonalyze:registry")
        return int(out.strip().splitlines()[-1])

    async def credential_still_valid(self) -> str:
        device, token = next(iter(self.tokens.items()))
        ws, _ = await _open(self.ws_url, device, token)
        await ws.close()
        return f"{device} admitted with its credential"


# ------------------------------------------------------------------ main


def check_single(steps: Steps, compose: Compose, base: str, ws_url: str) -> None:
    """The default layout (one gateway, published): requests, a lobby, phone sessions, a restart."""
    steps.run("up until healthy", compose.up_until_healthy)
    with httpx.Client(base_url=base, timeout=30) as http:
        steps.run("health", lambda: check_health(http))
        steps.run("signal download", lambda: check_signal(http))
        steps.run("README simulation example", lambda: check_simulation(http))
        admin = f"compose-test-{uuid.uuid4().hex[:8]}"
        lobby = steps.run("WebSocket lobby.create", lambda: asyncio.run(create_lobby(ws_url, admin)))
        jobs = []
        for dialect in devices_dialects():
            name = f"virtual-phone session{' (' + dialect + ' dialect)' if dialect else ''}"
            jobs.append(steps.run(name, lambda d=dialect: run_devices(ws_url, d)))  # type: ignore[misc]
        steps.run("down (volumes kept)", lambda: compose("down"))
        steps.run("up again until healthy", compose.up_until_healthy)
        for job_id in jobs:
            steps.run(f"job {job_id} survived", lambda j=job_id: check_job(http, j))  # type: ignore[misc]

        def lobby_survived() -> str:
            again = asyncio.run(get_lobby(ws_url, admin, lobby["lobby_id"]))
            check(again.get("code") == lobby["code"], f"lobby.get after the restart answered {again}")
            return f"lobby {lobby['code']}"

        steps.run("lobby survived", lobby_survived)
    steps.run("down --volumes", lambda: compose("down", "--volumes", "--remove-orphans"))


def check_replicas(steps: Steps, compose: Compose, base: str, ws_url: str) -> None:
    """``docker-compose.replicas.yml`` on top: two gateways on Redis behind nginx, through the one published port."""
    replicas = ReplicaCheck(compose, ws_url)
    steps.run("replicas: up until healthy", compose.up_until_healthy)
    with httpx.Client(base_url=base, timeout=30) as http:
        steps.run("replicas: health through nginx", lambda: check_health(http))
        steps.run(
            "replicas: spread, pushes across, gateway-2 drained", lambda: asyncio.run(replicas.spread_push_drain())
        )
        steps.run("replicas: gateway-2 back until healthy", compose.up_until_healthy)
        steps.run("replicas: nginx spreads over both again", lambda: asyncio.run(replicas.spread_again()))

        def session_across() -> str:
            served_before = replicas.served_pushes()
            job = run_devices(ws_url, None)
            served = replicas.served_pushes() - served_before
            check(served >= 1, "no push of the session crossed the backplane (were its phones all on one gateway?)")
            return f"{job}: {served} pushes crossed the backplane"

        job = steps.run("replicas: virtual-phone session through nginx", session_across).split(":")[0]
        steps.run(f"replicas: job {job} stored", lambda: check_job(http, job))
        issued = steps.run("replicas: device ids issued in Redis", replicas.registry_size)
        check(issued >= 6, f"only {issued} device ids in Redis")
        steps.run("replicas: down (volumes kept)", lambda: compose("down"))
        steps.run("replicas: up again until healthy", compose.up_until_healthy)

        def redis_kept() -> str:
            kept = replicas.registry_size()
            check(kept == issued, f"Redis holds {kept} device ids after the restart, {issued} before")
            return f"{kept} device ids"

        steps.run("replicas: Redis kept the device ids (AOF volume)", redis_kept)
        steps.run("replicas: a credential still admitted", lambda: asyncio.run(replicas.credential_still_valid()))
    steps.run("replicas: down --volumes", lambda: compose("down", "--volumes", "--remove-orphans"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-docker", action="store_true", help="leave a dockerd started here running")
    parser.add_argument("--probe", action="store_true", help="only say whether Docker runs or can be set up here")
    parser.add_argument(
        "--stack",
        choices=("both", "single", "replicas"),
        default="both",
        help="the default layout, the replicated one (docker-compose.replicas.yml) or both, one after the other",
    )
    args = parser.parse_args(argv)
    if args.probe:
        usable, reason = Docker().can_start()
        print(f"compose-test probe: {reason}", flush=True)
        return 0 if usable else 1

    steps = Steps()
    docker = Docker()
    try:
        steps.run("docker", docker.ensure)
        # build and clean-up cover every file in use (one build serves both layouts)
        compose = Compose(docker, free_port(), SINGLE if args.stack == "single" else REPLICAS)
        base = f"http://127.0.0.1:{compose.env['GATEWAY_PORT']}"
        ws_url = base.replace("http://", "ws://") + "/ws"
        try:
            steps.run("clean up an earlier run", lambda: compose("down", "--volumes", "--remove-orphans"))
            steps.run("build", lambda: compose.build())
            if args.stack in ("both", "single"):
                check_single(steps, compose.with_files(SINGLE), base, ws_url)
            if args.stack in ("both", "replicas"):
                check_replicas(steps, compose.with_files(REPLICAS), base, ws_url)
        finally:
            steps.run("down --volumes", lambda: compose("down", "--volumes", "--remove-orphans"))
        left = steps.run("nothing left behind", compose.leftovers)
        check(not any(left.values()), f"left behind: {left}")
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"\ncompose-test FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if not args.keep_docker:
            steps.run("docker", docker.stop_if_started)
    total = time.monotonic() - steps.start_s
    print(
        f"\ncompose-test ({args.stack}) passed in {total:.0f} s: "
        + ", ".join(
            f"{name} {seconds:.1f} s"
            for name, seconds in steps.durations_s.items()
            if name == "build" or "until healthy" in name
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
