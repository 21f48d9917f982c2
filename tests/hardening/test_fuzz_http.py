"""schemathesis over every service's OpenAPI, against the real processes, directly and through the gateway.

No generated request (valid or deliberately invalid) may get a 5xx, and every 4xx carries the error
envelope. The example count per operation keeps the whole file at a few minutes in CI.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sonalyze_suite import Suite

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 5
FUZZ_SETTINGS = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                         database=None)  # fmt: skip
HEALTH_PATHS = frozenset({"/health", "/healthz"})


def check(case: Any, base_url: str, target: str, counts: dict[str, Any], count: Any) -> None:
    response = case.call(base_url=base_url, timeout=60)
    code = None
    if response.status_code >= 400 and case.formatted_path not in HEALTH_PATHS:
        body = response.json()
        code = body["error"]["code"]
        assert code and body["error"]["message"], body
    count(counts, target, response.status_code, code)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"


def schema_of(suite: Suite, service: str) -> Any:
    return schemathesis.openapi.from_url(suite.config.url(service) + "/openapi.json")


@pytest.fixture(scope="session")
def lobby_schema(hard_suite: Suite) -> Any:
    return schema_of(hard_suite, "lobby")


@pytest.fixture(scope="session")
def measurement_schema(hard_suite: Suite) -> Any:
    return schema_of(hard_suite, "measurement")


@pytest.fixture(scope="session")
def simulation_schema(hard_suite: Suite) -> Any:
    return schema_of(hard_suite, "simulation")


@pytest.fixture(scope="session")
def storage_schema(hard_suite: Suite) -> Any:
    return schema_of(hard_suite, "storage")


@pytest.fixture(scope="session")
def gateway_schema(hard_suite: Suite) -> Any:
    return schema_of(hard_suite, "gateway")


lobby = schemathesis.pytest.from_fixture("lobby_schema")
measurement = schemathesis.pytest.from_fixture("measurement_schema")
simulation = schemathesis.pytest.from_fixture("simulation_schema")
storage = schemathesis.pytest.from_fixture("storage_schema")
gateway = schemathesis.pytest.from_fixture("gateway_schema")


@lobby.parametrize()
@FUZZ_SETTINGS
def test_lobby_directly(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    check(case, hard_suite.config.url("lobby"), "lobby", fuzz_counts, fuzz_count)


@measurement.parametrize()
@FUZZ_SETTINGS
def test_measurement_directly(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    check(case, hard_suite.config.url("measurement"), "measurement", fuzz_counts, fuzz_count)


@measurement.parametrize()
@FUZZ_SETTINGS
def test_measurement_through_the_gateway(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    if not case.formatted_path.startswith(("/v1/measurement", "/v1/jobs")):
        return  # the gateway serves only the public /v1 paths
    check(case, hard_suite.config.url("gateway"), "measurement via gateway", fuzz_counts, fuzz_count)


@simulation.parametrize()
@FUZZ_SETTINGS
def test_simulation_directly(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    check(case, hard_suite.config.url("simulation"), "simulation", fuzz_counts, fuzz_count)


@simulation.parametrize()
@FUZZ_SETTINGS
def test_simulation_through_the_gateway(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    if case.formatted_path in HEALTH_PATHS or case.formatted_path.startswith(("/gateway/", "/openapi")):
        return
    check(case, hard_suite.config.url("gateway") + "/v1/simulation", "simulation via gateway", fuzz_counts, fuzz_count)


@storage.parametrize()
@FUZZ_SETTINGS
def test_storage_directly(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    check(case, hard_suite.config.url("storage"), "storage", fuzz_counts, fuzz_count)


@gateway.parametrize()
@FUZZ_SETTINGS
def test_gateway_directly(case: Any, hard_suite: Suite, fuzz_counts: Any, fuzz_count: Any) -> None:
    check(case, hard_suite.config.url("gateway"), "gateway", fuzz_counts, fuzz_count)
