"""The compose file and Dockerfiles checked as data (`make compose-test` runs them for real)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("gateway", "lobby", "measurement", "simulation", "storage")
SPEC_ENV = {
    "gateway": {
        "LOBBY_URL", "MEASUREMENT_URL", "SIMULATION_URL", "INTERNAL_AUTH_TOKEN",
        "MAX_MESSAGE_BYTES", "RATE_LIMIT_RPS", "RATE_LIMIT_BURST", "HTTP_TIMEOUT_SECONDS",
    },
    "lobby": {"DATABASE_URL", "GATEWAY_URL", "MEASUREMENT_URL", "INTERNAL_AUTH_TOKEN"},
    "measurement": {"MEASUREMENT_DATA_DIR", "MEASUREMENT_MAX_UPLOAD_MB"},
    "storage": {"DATABASE_URL", "RUN_MIGRATIONS", "LOG_LEVEL"},
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_all_services_and_databases_are_declared(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*APP_SERVICES, "postgres", "postgres-lobby"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_builds_from_repo_root_with_an_existing_dockerfile(compose: dict[str, Any], name: str) -> None:
    build = compose["services"][name]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", ["postgres", "postgres-lobby"])
def test_databases_have_a_fast_healthcheck(compose: dict[str, Any], name: str) -> None:
    healthcheck = compose["services"][name]["healthcheck"]
    assert healthcheck["test"] and healthcheck["interval"] in ("1s", "2s")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_image_has_a_fast_healthcheck(compose: dict[str, Any], name: str) -> None:
    """The image's HEALTHCHECK applies (compose does not override it) and probes every 2 s at most."""
    assert "healthcheck" not in compose["services"][name]
    text = (ROOT / name / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK --interval=(\d+)s .*\n\s+CMD (.*)$", text, re.MULTILINE)
    assert match and int(match.group(1)) <= 2
    assert "/health" in match.group(2)


def test_only_the_gateway_publishes_a_port(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway"}
    assert compose["services"]["gateway"]["ports"] == ["${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8000}:8000"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_no_dockerfile_declares_a_volume(name: str) -> None:
    """Compose mounts named volumes where data lives; a VOLUME it never mounts leaves anonymous volumes behind."""
    assert "\nVOLUME" not in (ROOT / name / "Dockerfile").read_text()


def test_dockerignore_keeps_local_files_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {
        ".git",
        ".venv",
        "**/__pycache__",
        "**/*.egg-info",
        "measurement/debug_audio",
        "measurement_data",
    } <= ignored


@pytest.mark.parametrize(("name", "names"), sorted(SPEC_ENV.items()))
def test_spec_environment_variables_are_set(compose: dict[str, Any], name: str, names: set[str]) -> None:
    assert names <= set(compose["services"][name]["environment"])


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    for svc in compose["services"].values():
        for condition in (svc.get("depends_on") or {}).values():
            assert condition == {"condition": "service_healthy"}
    assert set(compose["services"]["gateway"]["depends_on"]) >= {"lobby", "measurement", "simulation"}
    assert "postgres-lobby" in compose["services"]["lobby"]["depends_on"]
    assert "postgres" in compose["services"]["storage"]["depends_on"]


def test_measurement_data_is_a_volume(compose: dict[str, Any]) -> None:
    assert "measurement_data" in compose["volumes"]
    assert "measurement_data:/data" in compose["services"]["measurement"]["volumes"]


def test_secrets_come_from_the_environment_or_dotenv(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for var in ("INTERNAL_AUTH_TOKEN", "POSTGRES_PASSWORD", "POSTGRES_LOBBY_PASSWORD"):
        assert "${" + var in text
    assert (ROOT / ".env.example").is_file()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_dockerfile_is_slim_non_root_and_copies_the_libs(name: str) -> None:
    text = (ROOT / name / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER " in text and "USER root" not in text
    assert "COPY libs/sonalyze_protocol" in text
    assert f"sonalyze_{name}.main:create_app" in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            source = line.split()[1]
            assert (ROOT / source).exists(), f"{name}/Dockerfile copies missing {source}"


@pytest.mark.parametrize("name", ["gateway", "lobby", "measurement", "simulation"])
def test_recording_services_keep_their_outbox_on_a_volume(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    outbox_dir = service["environment"]["OUTBOX_DIR"]
    mounts = [volume.split(":")[1] for volume in service["volumes"]]
    assert any(outbox_dir == mount or outbox_dir.startswith(mount + "/") for mount in mounts)
    assert "STORAGE_URL" in service["environment"]
