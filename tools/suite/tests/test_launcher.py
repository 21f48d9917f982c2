"""The launcher behind `make run`: real processes on real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sonalyze_suite.launcher import ServiceFailed, Suite, SuiteConfig, free_port
from sonalyze_suite.services import SERVICES

pytestmark = pytest.mark.e2e


def make_config(tmp_path: Path) -> SuiteConfig:
    return SuiteConfig.on_free_ports(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def group_members(pgid: int) -> set[int]:
    """Live processes of a process group (each service runs in a group of its own), from /proc."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.add(int(stat.parent.name))
    return members


def wait_gone(pgid: int, timeout_s: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


class TestSuite:
    def test_all_five_services_come_up_healthy_and_stop(self, tmp_path: Path) -> None:
        suite = Suite(make_config(tmp_path), log_dir=tmp_path / "logs")
        suite.start(timeout_s=90)
        try:
            pids = {name: child.process.pid for name, child in suite.children.items()}
            assert set(pids) == {s.name for s in SERVICES}
            for spec in SERVICES:
                body = httpx.get(suite.health_url(spec.name), timeout=5).json()
                assert body["status"] == "ok", (spec.name, body)
                if spec.name in ("lobby", "storage"):
                    assert body["database"] == "ok"
            # the measurement and simulation services keep pools of worker processes
            assert len(group_members(pids["measurement"])) > 1
            assert len(group_members(pids["simulation"])) > 1
        finally:
            suite.stop()
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            assert not wait_gone(pid), "a service's worker processes outlived it"
        assert (tmp_path / "logs" / "gateway.log").read_text()

    def test_a_killed_service_leaves_no_worker_processes(self, tmp_path: Path) -> None:
        config = make_config(tmp_path)
        config.services = ("simulation",)
        suite = Suite(config, log_dir=tmp_path / "logs")
        suite.start(timeout_s=90)
        try:
            pid = suite.children["simulation"].process.pid
            assert len(group_members(pid)) > 1
            suite.kill_service("simulation")
            assert not wait_gone(pid)
        finally:
            suite.stop()

    def test_a_busy_port_names_the_service_and_stops_the_rest(self, tmp_path: Path) -> None:
        config = make_config(tmp_path)
        blocker = socket.socket()
        blocker.bind((config.host, config.ports["lobby"]))
        blocker.listen()
        suite = Suite(config, log_dir=tmp_path / "logs")
        try:
            with pytest.raises(ServiceFailed, match=r"lobby: port \d+ .* already in use"):
                suite.start(timeout_s=30)
            assert suite.children == {}
        finally:
            blocker.close()

    def test_a_crashing_service_is_reported_with_its_output(self, tmp_path: Path) -> None:
        config = make_config(tmp_path)
        config.services = ("lobby",)
        config.lobby_database_url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
        config.extra_env = {"lobby": {"LOG_LEVEL": "NOT_A_LEVEL"}}
        suite = Suite(config, log_dir=tmp_path / "logs")
        with pytest.raises(ServiceFailed, match="lobby exited with code"):
            suite.start(timeout_s=30)


class TestMakeRunCommand:
    def test_ctrl_c_stops_every_service(self, tmp_path: Path) -> None:
        ports = {s.name: free_port() for s in SERVICES}
        env = {
            **os.environ,
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
            "MEASUREMENT_DATA_DIR": str(tmp_path / "data"),
            "LOBBY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/lobby.db",
            "STORAGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/storage.db",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "sonalyze_suite", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        assert f"ws://127.0.0.1:{ports['gateway']}/ws" in output
        assert httpx.get(f"http://127.0.0.1:{ports['gateway']}/healthz").status_code == 200
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "all services stopped" in rest
        for port in ports.values():
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


class TestServiceEnvironment:
    def test_each_run_gets_a_random_token_and_key_handed_to_every_service(self, tmp_path: Path) -> None:
        first, second = make_config(tmp_path), make_config(tmp_path)
        assert first.internal_auth_token and first.internal_auth_token != second.internal_auth_token
        assert first.device_token_key and first.device_token_key != second.device_token_key
        for spec in SERVICES:
            assert first.service_env(spec)["INTERNAL_AUTH_TOKEN"] == first.internal_auth_token

    def test_services_reach_the_gateway_on_its_internal_listener(self, tmp_path: Path) -> None:
        config = make_config(tmp_path)
        envs = {spec.name: config.service_env(spec) for spec in SERVICES}
        assert config.gateway_internal_port != config.ports["gateway"]
        assert {env["GATEWAY_URL"] for env in envs.values()} == {config.gateway_internal_url}
        assert envs["gateway"]["INTERNAL_PORT"] == str(config.gateway_internal_port)
        assert envs["gateway"]["DEVICE_AUTH"] == "claim"
        assert envs["gateway"]["DEVICE_REGISTRY_PATH"].endswith("gateway-devices.sqlite3")

    def test_the_environment_overrides_mode_token_and_key(self) -> None:
        env = {"INTERNAL_AUTH_TOKEN": "t" * 40, "DEVICE_AUTH": "token", "DEVICE_TOKEN_KEY": "k" * 43}
        config = SuiteConfig.from_environment(env)
        assert (config.internal_auth_token, config.device_auth, config.device_token_key) == (
            "t" * 40, "token", "k" * 43,
        )  # fmt: skip
        assert not config.token_generated and not config.key_generated


class TestGatewayReplicas:
    def test_replicas_get_stepped_ports_a_backplane_and_every_service_knows_all_of_them(self) -> None:
        config = SuiteConfig.from_environment({"GATEWAY_REPLICAS": "3"})
        assert config.redis_url == "redis://127.0.0.1:6379/0"
        assert config.started_services[-3:] == ("gateway", "gateway-2", "gateway-3")
        assert [config.port(n) for n in config.gateway_names] == [8000, 8010, 8020]
        assert [config.internal_port(n) for n in config.gateway_names] == [8005, 8015, 8025]
        gateway = next(s for s in SERVICES if s.name == "gateway")
        third = config.service_env(gateway, "gateway-3")
        assert third["INTERNAL_PORT"] == "8025" and third["REDIS_URL"] == config.redis_url
        assert "DEVICE_REGISTRY_PATH" not in third  # the registry is shared in Redis
        assert third["OUTBOX_DIR"].endswith("outbox/gateway-3")  # not the first gateway's queue
        assert config.service_env(gateway)["OUTBOX_DIR"].endswith(".run/outbox")
        lobby = next(s for s in SERVICES if s.name == "lobby")
        assert config.service_env(lobby)["GATEWAY_URL"].split(",") == [
            "http://127.0.0.1:8005", "http://127.0.0.1:8015", "http://127.0.0.1:8025",
        ]  # fmt: skip

    def test_one_gateway_keeps_the_local_registry_and_no_redis(self) -> None:
        config = SuiteConfig.from_environment({})
        gateway = next(s for s in SERVICES if s.name == "gateway")
        env = config.service_env(gateway)
        assert config.started_services.count("gateway") == 1 and "REDIS_URL" not in env
        assert env["DEVICE_REGISTRY_PATH"].endswith("gateway-devices.sqlite3")

    def test_replicas_without_a_reachable_redis_say_so_and_exit(self, tmp_path: Path) -> None:
        dead = free_port()
        env = {**os.environ, "GATEWAY_REPLICAS": "2", "REDIS_URL": f"redis://127.0.0.1:{dead}/0"}
        result = subprocess.run(
            [sys.executable, "-m", "sonalyze_suite", "run"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 1
        assert f"Redis is not reachable at 127.0.0.1:{dead} (REDIS_URL)" in result.stderr
        assert "start Redis" in result.stderr
