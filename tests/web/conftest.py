"""Browser tests: the real suite as processes, the page opened in Debian's headless Chromium via Playwright.

Playwright only drives the installed browser (`CHROMIUM_PATH`, default /usr/bin/chromium); it never
downloads one. `.ci/run` installs Debian's `chromium` package when it is missing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sonalyze_suite import Suite, SuiteConfig
from sonalyze_suite.testing import running_suite

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS_DIR = Path(
    os.environ.get("WEB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / ".run" / "web-artifacts")
)

# short waits, so a silent device fails a step in seconds
PROTOCOL_ENV = {
    "MEASUREMENT_READY_TIMEOUT_S": "15",
    "MEASUREMENT_AUDIO_TIMEOUT_S": "30",
    "MEASUREMENT_RECORDING_TIMEOUT_S": "15",
    "MEASUREMENT_PLAYBACK_MARGIN_S": "15",
    "MEASUREMENT_UPLOAD_TIMEOUT_S": "60",
    "MEASUREMENT_SESSION_ANALYSIS_TIMEOUT_S": "170",
}


@pytest.fixture(scope="session")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    """Gateway (serving the page), lobby, measurement and simulation as real processes on free ports."""
    base: Path = tmp_path_factory.mktemp("web")
    config = SuiteConfig.on_free_ports(
        data_dir=base / "data",
        state_dir=base / "state",
        services=("measurement", "lobby", "simulation", "gateway"),
        extra_env={"lobby": dict(PROTOCOL_ENV)},
    )
    async with running_suite(config, base / "logs", 120.0) as running:
        yield running


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM_PATH).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM_PATH}: `apt-get install -y chromium` (.ci/run does it) or set CHROMIUM_PATH"
        )
    async with async_playwright() as running:
        yield running


@pytest.fixture
async def launch_chromium(playwright) -> AsyncIterator[object]:
    """``await launch_chromium([...extra flags])``: another headless Chromium (closed after the test)."""
    launched = []

    async def launch(extra_args: list[str]) -> object:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=[*CHROMIUM_FLAGS, *extra_args])
        launched.append(browser)
        return browser

    yield launch
    for browser in launched:
        await browser.close()


@pytest.fixture(scope="module")
async def browser(playwright) -> AsyncIterator[object]:
    launched = await playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_FLAGS)
    try:
        yield launched
    finally:
        await launched.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


PAINTED_PIXELS_JS = """(figure) => {
  const canvas = figure.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return painted;
}"""


@pytest.fixture
def painted_pixels():
    """``await painted_pixels(figure_locator)``: how many pixels of the plot's canvas are painted (uPlot draws
    on a transparent canvas, so 0 means nothing was drawn)."""

    async def count(figure) -> int:
        return await figure.evaluate(PAINTED_PIXELS_JS)

    return count
