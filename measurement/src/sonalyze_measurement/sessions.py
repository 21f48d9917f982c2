"""The session registry: which job and signal a lobby measurement session uses.

The lobby registers each session it creates (``PUT /v1/measurement/sessions/{session_id}``), so a phone
can fetch "its session's signal" with ``?session_id=`` alone. One JSON file per session under
``MEASUREMENT_DATA_DIR/sessions/``, written atomically; registering the same session again replaces it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from sonalyze_measurement.files import read_json, write_json
from sonalyze_measurement.schemas import SessionRecord
from sonalyze_protocol.errors import BadRequest, NotFound

SESSION_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def check_session_id(session_id: str) -> str:
    """1-100 of ``[A-Za-z0-9._-]``, not only dots; raises `BadRequest`."""
    if not SESSION_ID_PATTERN.fullmatch(session_id) or set(session_id) == {"."}:
        raise BadRequest("session_id must be 1-100 characters of letters, digits, '.', '_' and '-'")
    return session_id


class SessionStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "sessions"
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, session_id: str, job_id: str, signal_id: str) -> SessionRecord:
        record = SessionRecord(session_id=check_session_id(session_id), job_id=job_id, signal_id=signal_id)
        write_json(self.root / f"{session_id}.json", record.model_dump(mode="json"))
        return record

    def get(self, session_id: str) -> SessionRecord:
        """The registered session; `NotFound` when no lobby registered it."""
        record = read_json(self.root / f"{check_session_id(session_id)}.json")
        if record is None:
            raise NotFound(f"measurement session {session_id!r} is not registered")
        return SessionRecord.model_validate(record)
