"""schemathesis over storage's own OpenAPI, against a real storage process: no request gets a 5xx.

Both generation modes run (valid and deliberately invalid requests), a bounded number of examples per
operation so the whole file stays well under a minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sonalyze_suite.launcher import Suite, SuiteConfig

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="session")
async def storage_process(
    make_database_url: Callable[[str], Awaitable[str]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    state_dir: Path = tmp_path_factory.mktemp("storage_fuzz")
    config = SuiteConfig.on_free_ports(
        data_dir=state_dir / "data",
        state_dir=state_dir,
        services=("storage",),
        storage_database_url=await make_database_url("storage_fuzz"),
        log_level="WARNING",
    )
    suite = Suite(config, log_dir=state_dir / "logs")
    suite.start(timeout_s=60)
    try:
        yield config.url("storage")
    finally:
        suite.stop()


@pytest.fixture(scope="session")
def storage_schema(storage_process: str) -> Any:
    return schemathesis.openapi.from_url(f"{storage_process}/openapi.json")


schema = schemathesis.pytest.from_fixture("storage_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: Any) -> None:
    response = case.call(timeout=10)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
    if response.status_code >= 400 and case.formatted_path != "/health":
        error = response.json()["error"]
        assert error["code"] and error["message"]
