"""``docker-compose.replicas.yml`` and ``deploy/nginx/nginx.conf``: checked as data, then the same nginx.conf
run for real (Debian's nginx) in front of two real gateway processes on one Redis backplane.

The live test needs the ``nginx`` binary and Redis; it is skipped without them, except under CI
(``.ci/run`` installs Debian's nginx-light, Redis runs on the machine).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from websockets.asyncio.client import connect

from sonalyze_suite.launcher import Suite, SuiteConfig, check_redis, free_port

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class _ComposeLoader(yaml.SafeLoader):
    """Reads compose's merge tags as plain values (``!reset []`` -> [], ``!override [...]`` -> [...])."""


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_scalar(node)
        ),
    )


@pytest.fixture(scope="module")
def replicas() -> dict[str, Any]:
    return yaml.load((ROOT / "docker-compose.replicas.yml").read_text(), Loader=_ComposeLoader)


def test_two_gateways_share_redis_and_only_the_proxy_publishes(replicas: dict[str, Any]) -> None:
    services = replicas["services"]
    assert {"gateway", "gateway-2", "proxy", "redis"} <= set(services)
    assert services["gateway"]["ports"] == [] and services["gateway-2"]["ports"] == []
    assert services["proxy"]["ports"] == ["${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8000}:8000"]
    assert services["gateway-2"]["extends"] == {"file": "docker-compose.yml", "service": "gateway"}
    for name in ("gateway", "gateway-2"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        # one kept signing key for both: required, never a random one per process
        assert services[name]["environment"]["DEVICE_TOKEN_KEY"].startswith("${DEVICE_TOKEN_KEY:?")
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["gateway-2"]["volumes"] == ["outbox_gateway_2:/outbox"]  # not the first gateway's queue
    for name in ("lobby", "measurement"):
        assert services[name]["environment"]["GATEWAY_URL"] == "http://gateway:8001,http://gateway-2:8001"
    for name in ("proxy", "redis"):
        assert (ROOT / services[name]["build"]["dockerfile"]).is_file()


def test_the_nginx_config_passes_websocket_upgrades_to_both_gateways() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"upstream gateways \{[^}]*server gateway:8000[^}]*server gateway-2:8000", conf)
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert re.search(r"proxy_next_upstream [^;]*http_503", conf)  # a draining gateway's refusal
    assert int(re.search(r"client_max_body_size (\d+)m;", conf).group(1)) >= 50  # type: ignore[union-attr]


def test_compose_merges_the_override_as_intended_when_its_plugin_is_here() -> None:
    """``docker compose config`` (no engine needed) with the real merge rules, where the plugin is installed."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    env = {**os.environ, "INTERNAL_AUTH_TOKEN": "compose-config-check-" + uuid.uuid4().hex, "DEVICE_TOKEN_KEY": ""}
    command = [docker, "compose", "-f", "docker-compose.yml", "-f", "docker-compose.replicas.yml", "config"]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert refused.returncode != 0 and "DEVICE_TOKEN_KEY is not set" in refused.stderr
    env["DEVICE_TOKEN_KEY"] = "compose-config-check-key-" + uuid.uuid4().hex
    result = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    services = orjson.loads(result.stdout)["services"]
    assert [name for name, svc in services.items() if svc.get("ports")] == ["proxy"]
    assert services["gateway-2"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["gateway-2"]["environment"]["LOBBY_URL"] == "http://lobby:8000"  # the rest from gateway
    assert [v["source"] for v in services["gateway-2"]["volumes"]] == ["outbox_gateway_2"]
    assert services["lobby"]["environment"]["GATEWAY_URL"] == "http://gateway:8001,http://gateway-2:8001"
    assert services["gateway"]["environment"]["DEVICE_TOKEN_KEY"] == env["DEVICE_TOKEN_KEY"]
    assert services["gateway-2"]["environment"]["DEVICE_TOKEN_KEY"] == env["DEVICE_TOKEN_KEY"]


# -- live: the repository's nginx.conf in front of two gateway processes --------------------------------------


def _need(problem: str | None) -> None:
    if problem:
        if os.environ.get("CI"):
            raise AssertionError(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, str, subprocess.Popen[bytes]]]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    _need(None if nginx else "nginx is not installed (apt-get install nginx-light)")
    _need(check_redis(REDIS_URL))
    base = tmp_path_factory.mktemp("nginx")
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        services=("gateway",),
        gateway_replicas=2,
        redis_url=REDIS_URL,
        redis_key_prefix=f"nginx-{uuid.uuid4().hex[:8]}:",
        extra_env={"gateway": {"LOBBY_URL": f"http://127.0.0.1:{free_port()}"}},  # no lobby: notices fail quietly
    )
    suite = Suite(config, log_dir=base / "logs")
    suite.start(timeout_s=60)
    port = free_port()
    conf = (
        NGINX_CONF.read_text()
        .replace("server gateway:8000", f"server 127.0.0.1:{config.port('gateway')}")
        .replace("server gateway-2:8000", f"server 127.0.0.1:{config.port('gateway-2')}")
        .replace("listen 8000;", f"listen 127.0.0.1:{port};")
        .replace("pid /tmp/nginx.pid;", f"pid {base}/nginx.pid;")
    )
    (base / "nginx.conf").write_text(conf)
    (base / "nginx").mkdir()
    proxy = subprocess.Popen(
        [nginx, "-c", str(base / "nginx.conf"), "-p", str(base / "nginx"), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/proxy-health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proxy.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        yield suite, f"127.0.0.1:{port}", proxy
    finally:
        proxy.send_signal(signal.SIGQUIT)
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        suite.stop()


async def _identified(ws: Any) -> dict[str, Any]:
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("event") == "gateway.identified":
            return dict(frame["data"])


@pytest.mark.e2e
async def test_through_nginx_sockets_spread_over_both_and_a_drained_gateways_phones_land_on_the_other(
    behind_nginx: tuple[Suite, str, subprocess.Popen[bytes]],
) -> None:
    suite, address, _ = behind_nginx
    devices = [f"dev-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    sockets = [await connect(f"ws://{address}/ws?device_id={d}", open_timeout=5) for d in devices]
    tokens = [(await _identified(ws))["device_token"] for ws in sockets]
    async with httpx.AsyncClient() as client:
        spread = [
            (await client.get(suite.config.url(n) + "/healthz")).json()["devices"] for n in suite.config.gateway_names
        ]
        pushed = await client.post(
            suite.config.internal_url("gateway") + "/internal/broadcast",
            json={"device_ids": devices, "event": "through.nginx", "data": {}},
            headers={"X-Internal-Token": suite.config.internal_auth_token or ""},
        )
    frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for ws in sockets]
    assert spread[0] >= 1 and spread[1] >= 1 and sum(spread) == len(devices)  # least_conn spreads them
    assert sorted(pushed.json()["delivered"]) == sorted(devices)
    assert {f["event"] for f in frames} == {"through.nginx"}

    # drain gateway-2: its phones are closed with 1012 and reconnect through the same address
    suite.children["gateway-2"].process.send_signal(signal.SIGTERM)
    await asyncio.gather(*(asyncio.wait_for(ws.wait_closed(), 3) for ws in sockets), return_exceptions=True)
    closed = [ws.close_code for ws in sockets if ws.close_code is not None]
    assert closed and set(closed) == {1012} and len(closed) == spread[1]
    moved = [(d, t) for d, t, ws in zip(devices, tokens, sockets, strict=True) if ws.close_code == 1012]
    again = [await connect(f"ws://{address}/ws?device_id={d}&device_token={t}", open_timeout=5) for d, t in moved]
    for ws in again:
        await _identified(ws)
    async with httpx.AsyncClient() as client:
        health = (await client.get(suite.config.url("gateway") + "/healthz")).json()
    for ws in [*sockets, *again]:
        await ws.close()
    assert health["devices"] == len(devices)  # all on the remaining gateway
