"""``make compose-test``: the suite as ``docker compose`` runs it, checked through the published gateway only.

Steps (each printed with its time): Docker up (with the machine set-up scripts when ``docker info`` fails),
build, ``up`` until healthy, health, signal download, the README's simulation example, a WebSocket lobby,
whole virtual-phone sessions (``python -m sonalyze_devices``, every dialect it offers), ``down`` + ``up``
and the job and lobby are still there, ``down -v`` leaving no container, network or volume.

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

from sonalyze_devices.client import DeviceClient
from sonalyze_suite.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "sonalyze-compose-test"
BASE_IMAGES = ("python:3.11-slim", "postgres:16-alpine")
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
    def __init__(self, docker: Docker, gateway_port: int) -> None:
        self.docker = docker
        self.env = {
            **docker.env,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "GATEWAY_BIND": "127.0.0.1",
            "GATEWAY_PORT": str(gateway_port),
            "INTERNAL_AUTH_TOKEN": secrets.token_hex(24),
            # this checks wiring, not latency: on a shared, loaded machine a hybrid simulation may take longer
            # than the gateway's 30 s timeout and the simulation's 28 s deadline, failing the phones that wait
            "HTTP_TIMEOUT_SECONDS": os.environ.get("HTTP_TIMEOUT_SECONDS", "120"),
            "SIMULATION_DEADLINE_S": os.environ.get("SIMULATION_DEADLINE_S", "110"),
        }

    def __call__(self, *args: str, quiet: bool = True, timeout_s: float = 1800) -> str:
        return sh(
            "docker", "compose", "--project-directory", str(ROOT), *args, env=self.env, quiet=quiet, timeout_s=timeout_s
        )

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


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-docker", action="store_true", help="leave a dockerd started here running")
    parser.add_argument("--probe", action="store_true", help="only say whether Docker runs or can be set up here")
    args = parser.parse_args(argv)
    if args.probe:
        usable, reason = Docker().can_start()
        print(f"compose-test probe: {reason}", flush=True)
        return 0 if usable else 1

    steps = Steps()
    docker = Docker()
    try:
        steps.run("docker", docker.ensure)
        compose = Compose(docker, free_port())
        base = f"http://127.0.0.1:{compose.env['GATEWAY_PORT']}"
        ws_url = base.replace("http://", "ws://") + "/ws"
        try:
            steps.run("clean up an earlier run", lambda: compose("down", "--volumes", "--remove-orphans"))
            steps.run("build", lambda: compose.build())
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
        f"\ncompose-test passed in {total:.0f} s: "
        + ", ".join(
            f"{name} {seconds:.1f} s"
            for name, seconds in steps.durations_s.items()
            if name in ("build", "up until healthy", "up again until healthy")
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
