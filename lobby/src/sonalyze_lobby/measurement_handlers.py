"""Gateway events of the measurement protocol (``measurement.*``), merged into the lobby's handler table.

Filled in by the measurement-protocol work; the lobby's own events live in ``gateway_handler.py``.
"""

from __future__ import annotations

from typing import Any

from sonalyze_protocol.handlers import Handler

MEASUREMENT_HANDLERS: dict[str, Handler[Any, Any]] = {}
