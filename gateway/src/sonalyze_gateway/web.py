"""The lab's web page (the repository's ``web/`` folder), served by the gateway at ``/``.

Static files only: the page talks to this same gateway (``/ws`` and ``/v1/...``), and its
Content-Security-Policy lets it reach nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("sonalyze.gateway.web")

DEFAULT_WEB_DIR: Final = Path(__file__).resolve().parents[3] / "web"
"""``web/`` beside ``gateway/`` in a checkout (an editable install); images set ``WEB_DIR``."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""Everything from the gateway itself (CSP3 ``'self'`` covers the same-origin WebSocket); inline styles for
the plotting library's element styles."""


class WebFiles(StaticFiles):
    """``StaticFiles`` with the page's security headers and no caching of the (small) page files."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-cache"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount_web(app: FastAPI, web_dir: Path | None) -> bool:
    """Serve ``web_dir`` at ``/`` (after every other route); False (and a log line) when it is missing."""
    directory = web_dir or DEFAULT_WEB_DIR
    if not (directory / "index.html").is_file():
        logger.info("no web page at %s: / is not served", directory)
        return False
    app.mount("/", WebFiles(directory=directory, html=True), name="web")
    return True
