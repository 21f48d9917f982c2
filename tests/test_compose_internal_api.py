"""Compose keeps the internal API private and has no default internal token (issue 12), checked as data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_internal_token_is_required_and_the_message_names_dotenv() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{INTERNAL_AUTH_TOKEN([^}]*)\}", text)
    assert uses and all(use.startswith(":?") and ".env" in use for use in uses)
    assert "sonalyze_internal_token" not in text


def test_the_internal_listener_is_not_published_and_services_use_it(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    internal_port = str(gateway["environment"]["INTERNAL_PORT"])
    assert gateway["environment"]["INTERNAL_HOST"] == "0.0.0.0"
    container_ports = [str(port).rsplit(":", 1)[-1] for port in gateway.get("ports", [])]
    assert container_ports == ["8000"] and internal_port not in container_ports
    for name in ("lobby", "measurement"):
        assert compose["services"][name]["environment"]["GATEWAY_URL"] == f"http://gateway:{internal_port}"


def test_device_auth_defaults_to_claim_with_a_durable_registry(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    assert env["DEVICE_AUTH"] == "${DEVICE_AUTH:-claim}"
    mounts = [volume.split(":")[1] for volume in compose["services"]["gateway"]["volumes"]]
    assert any(env["DEVICE_REGISTRY_PATH"].startswith(mount + "/") for mount in mounts)


def test_the_example_env_has_no_usable_token() -> None:
    lines = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    assert lines["INTERNAL_AUTH_TOKEN"] == ""
    assert lines["DEVICE_AUTH"] == "claim"
