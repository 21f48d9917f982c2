"""Fixtures of the hardening tests (issue 14): the whole suite as real processes, used as a hostile client would."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite


@pytest.fixture(scope="session")
async def hard_suite(
    tmp_path_factory: pytest.TempPathFactory, make_database_url: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Suite]:
    """All five services on free ports (lobby and storage on PostgreSQL when TEST_DATABASE_URL is set)."""
    base: Path = tmp_path_factory.mktemp("hardening")
    on_postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        lobby_database_url=await make_database_url("lobby_hard") if on_postgres else None,
        storage_database_url=await make_database_url("storage_hard") if on_postgres else None,
        log_level="WARNING",
        extra_env={
            "measurement": {"MEASUREMENT_ANALYSIS_WORKERS": "1"},
            # fuzzing sends hundreds of messages a second from one device: no rate limiting in the way
            "gateway": {"RATE_LIMIT_RPS": "10000", "RATE_LIMIT_BURST": "10000"},
            # generated rooms stay cheap, so a fuzz run costs seconds, not minutes
            "simulation": {"SIMULATION_COST_BUDGET_S": "2", "SIMULATION_QUEUE_WAIT_S": "30"},
        },
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running


FUZZ_COUNTS: dict[str, dict[str, int]] = {}
"""Cases tried, 5xx answers and internal errors per fuzz target (printed at the end of the run)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FUZZ_COUNTS:
        terminalreporter.write_line("fuzzing (target: cases, 5xx, internal_error):")
        for name, c in sorted(FUZZ_COUNTS.items()):
            terminalreporter.write_line(
                f"  {name}: {c['cases']} cases, {c['5xx']} 5xx, {c['internal_error']} internal_error"
            )


@pytest.fixture(scope="session")
def fuzz_counts() -> dict[str, dict[str, int]]:
    return FUZZ_COUNTS


def count(counts: dict[str, dict[str, int]], target: str, status: int | None, code: str | None) -> None:
    entry = counts.setdefault(target, {"cases": 0, "5xx": 0, "internal_error": 0})
    entry["cases"] += 1
    entry["5xx"] += int(status is not None and status >= 500)
    entry["internal_error"] += int(code == "internal_error")


@pytest.fixture(scope="session")
def fuzz_count() -> Callable[..., None]:
    return count
