"""The gateway serves the lab's web page at / (static files with a same-origin-only policy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from sonalyze_gateway.main import create_app
from sonalyze_gateway.settings import Settings
from sonalyze_gateway.web import DEFAULT_WEB_DIR


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://gw") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(Settings()):
        yield c


async def test_page_and_its_modules_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (DEFAULT_WEB_DIR / "index.html").read_text()
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    module = await client.get("/js/main.js")
    assert module.status_code == 200
    # browsers refuse ES modules served with another type
    assert module.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    library = await client.get("/vendor/uplot.esm.js")
    assert library.status_code == 200 and "export { uPlot as default }" in library.text


async def test_gateway_routes_keep_priority(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["service"] == "gateway"
    missing_v1 = await client.get("/v1/nothing")
    assert missing_v1.status_code == 404 and missing_v1.json()["error"]["code"] == "not_found"
    missing_file = await client.get("/no-such-file.js")
    assert missing_file.status_code == 404 and missing_file.json()["error"]["code"] == "not_found"


async def test_no_page_without_a_web_folder(tmp_path: Path) -> None:
    async for c in _client(Settings(web_dir=tmp_path)):
        assert (await c.get("/")).status_code == 404
        assert (await c.get("/healthz")).status_code == 200


def test_vendored_library_is_the_locked_version() -> None:
    """web/vendor holds exactly the version web/package-lock.json pins (`make web` rebuilds it)."""
    import json

    lock = json.loads((DEFAULT_WEB_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/uplot"]["version"]
    header = (DEFAULT_WEB_DIR / "vendor" / "uplot.esm.js").read_text()[:400]
    assert f"(v{version})" in header
    assert json.loads((DEFAULT_WEB_DIR / "package.json").read_text())["devDependencies"]["uplot"] == version
