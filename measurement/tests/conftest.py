"""Fixtures of the measurement tests: an in-process app (real process pool), a live service, WAV helpers."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf
from asgi_lifespan import LifespanManager
from reference_cases import ReferenceCase, design_room, simulate_recording

from sonalyze_measurement.main import create_app
from sonalyze_measurement.settings import Settings
from sonalyze_suite.launcher import Suite, SuiteConfig

TOKEN = "test-internal-token"


@dataclass
class App:
    client: httpx.AsyncClient
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.measurement_data_dir


def make_settings(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "measurement_data_dir": root / "data",
        "measurement_debug_audio_dir": root / "debug_audio",
        "measurement_analysis_workers": 1,
        "internal_auth_token": TOKEN,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


async def _open(settings: Settings) -> AsyncIterator[App]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://measurement", timeout=60) as client:
            yield App(client, settings)


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    """One app per test module (the process pool is started once); jobs keep tests apart."""
    async for opened in _open(make_settings(tmp_path_factory.mktemp("measurement"))):
        yield opened


@pytest.fixture(scope="module")
async def small_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[App]:
    """An app that accepts uploads up to 0.1 MB."""
    async for opened in _open(make_settings(tmp_path_factory.mktemp("small"), measurement_max_upload_mb=0.1)):
        yield opened


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The measurement service as a real uvicorn process on a free port (one analysis worker)."""
    root = tmp_path_factory.mktemp("live")
    config = SuiteConfig.on_free_ports(
        data_dir=root / "data",
        state_dir=root / "state",
        services=("measurement",),
        internal_auth_token=TOKEN,
        log_level="WARNING",
        extra_env={"measurement": {"MEASUREMENT_ANALYSIS_WORKERS": "1", "MEASUREMENT_MAX_UPLOAD_MB": "20"}},
    )
    suite = Suite(config, log_dir=root / "logs")
    suite.start(timeout_s=60)
    try:
        yield SimpleNamespace(url=config.url("measurement"), data_dir=config.data_dir)
    finally:
        suite.stop()


def wav_bytes(samples: np.ndarray, rate_hz: int, subtype: str = "PCM_16", format: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, subtype=subtype, format=format)
    return buffer.getvalue()


def signal_samples(wav: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(wav), dtype="float64")
    return samples


def recording_of(signal: np.ndarray, case: ReferenceCase) -> tuple[np.ndarray, dict]:
    """A simulated phone recording of ``signal`` (48 kHz) in the case's room, and the design's truth."""
    design = design_room(case)
    return simulate_recording(signal, 48000, design, case), design.truth


async def new_job(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/jobs", json={"map": {"room": "test"}, "meta": {"by": "tests"}})
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


@pytest.fixture(scope="module")
async def signal_48k(app: App) -> tuple[np.ndarray, str]:
    """The service's default 48 kHz signal as downloaded, and its id."""
    response = await app.client.get("/v1/measurement/audio", params={"sample_rate": 48000})
    assert response.status_code == 200
    return signal_samples(response.content), response.headers["x-signal-id"]


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """The helpers above as one fixture (test files cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        wav_bytes=wav_bytes,
        signal_samples=signal_samples,
        recording_of=recording_of,
        new_job=new_job,
        make_settings=make_settings,
        TOKEN=TOKEN,
    )
