"""Fixtures of the simulation tests: the app with its real worker pool, and request builders."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sonalyze_simulation.main import create_app
from sonalyze_simulation.settings import Settings

TOKEN = "test-internal-token"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "simulation_pool_size": 2,
        "simulation_queue_wait_s": 60.0,
        "internal_auth_token": TOKEN,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan entered (the worker pool is real processes) and a client on it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simulation", timeout=120.0) as client:
            yield app, client


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """One app for the session: two workers, default limits."""
    async with running_app(make_settings()) as (_, http):
        yield http


@pytest.fixture(scope="session")
def app_factory() -> Callable[..., Any]:
    """``async with app_factory(simulation_pool_size=1) as (app, client)``: an app with other settings."""

    def factory(**overrides: Any) -> Any:
        return running_app(make_settings(**overrides))

    return factory


SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "type": "shoebox",
        "dimensions_m": [5.0, 4.0, 2.5],
        "default_material": {"absorption": 0.2},
    },
    "sources": [{"id": "s1", "position_m": [2.5, 0.5, 1.2]}],
    "microphones": [{"id": "m1", "position_m": [2.5, 3.5, 1.2]}],
}


@pytest.fixture
def spec_example() -> dict[str, Any]:
    """The body of the spec's "Run Simulation" curl example, exactly."""
    return copy.deepcopy(SPEC_EXAMPLE)


@pytest.fixture(scope="session")
async def example_response(client: httpx.AsyncClient) -> dict[str, Any]:
    """The answer to the spec's example (simulated once per session)."""
    response = await client.post("/simulate", json=SPEC_EXAMPLE)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def shoebox_body() -> Callable[..., dict[str, Any]]:
    """A small, quick request (16 kHz, one pair) with the fields given as keywords replaced."""

    def build(
        dimensions_m: tuple[float, float, float] = (5.0, 4.0, 2.5),
        absorption: Any = 0.2,
        scattering: float | None = None,
        sources: list[tuple[str, tuple[float, float, float]]] | None = None,
        microphones: list[tuple[str, tuple[float, float, float]]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        material: dict[str, Any] = {"absorption": absorption}
        if scattering is not None:
            material["scattering"] = scattering
        body: dict[str, Any] = {
            "room": {"type": "shoebox", "dimensions_m": list(dimensions_m), "default_material": material},
            "sources": [{"id": i, "position_m": list(p)} for i, p in (sources or [("s1", (2.5, 0.7, 1.2))])],
            "microphones": [{"id": i, "position_m": list(p)} for i, p in (microphones or [("m1", (2.0, 3.2, 1.4))])],
            "sample_rate_hz": 16000,
            "air_absorption": False,
        }
        body.update(fields)
        return body

    return build


def mid_rt60_s(result: dict[str, Any]) -> float:
    """Median of the rt60_s values the shared metrics gave: broadband and the 500 Hz-2 kHz bands."""
    values = [result["broadband"]["rt60_s"], *(result["bands"][b]["rt60_s"] for b in ("500", "1000", "2000"))]
    found = sorted(v for v in values if v is not None)
    assert len(found) >= 2, f"the metrics left rt60_s null: {result['null_reasons']}"
    middle = len(found) // 2
    return found[middle] if len(found) % 2 else (found[middle - 1] + found[middle]) / 2


@pytest.fixture
def mid_rt60() -> Callable[[dict[str, Any]], float]:
    return mid_rt60_s
