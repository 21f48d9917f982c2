"""Which device ids have been issued a credential, and each one's generation: a small SQLite file.

Read at startup into a dict, so a connection is checked without I/O; a write happens only when a
device id is first issued a credential or revoked. The file belongs to one signing key: started with
another key, the gateway starts a new registry, since no credential signed before could be checked.
Why here and not in the storage service: see PLAN.md (Device identity).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("sonalyze.gateway.devices")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    issued INTEGER NOT NULL,
    changed_at_s REAL NOT NULL
);
"""


@dataclass(slots=True)
class DeviceRecord:
    generation: int
    issued: bool  # False after a revocation: the id may be claimed afresh, with the next generation


class DeviceRegistry:
    """Issued device ids, durable when a path is given (else in memory: claim mode only)."""

    def __init__(self, path: Path | None, key_fingerprint: str) -> None:
        self.path = path
        self._records: dict[str, DeviceRecord] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        stored = self._db.execute("SELECT value FROM meta WHERE name = 'key'").fetchone()
        if stored is not None and stored[0] != key_fingerprint:
            n_forgotten = self._db.execute("SELECT count(*) FROM devices").fetchone()[0]
            logger.warning(
                "DEVICE_TOKEN_KEY changed: the %d device ids issued under the old key are forgotten and may be "
                "claimed again (set DEVICE_TOKEN_KEY to keep credentials across restarts)",
                n_forgotten,
            )
            self._db.execute("DELETE FROM devices")
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('key', ?)", (key_fingerprint,))
        for device_id, generation, issued in self._db.execute("SELECT device_id, generation, issued FROM devices"):
            self._records[device_id] = DeviceRecord(generation, bool(issued))

    def __len__(self) -> int:
        return sum(1 for record in self._records.values() if record.issued)

    def is_issued(self, device_id: str) -> bool:
        record = self._records.get(device_id)
        return record is not None and record.issued

    def is_current(self, device_id: str, generation: int) -> bool:
        """True when a credential of ``generation`` is still valid for ``device_id``."""
        record = self._records.get(device_id)
        return record is not None and record.issued and record.generation == generation

    def issue(self, device_id: str) -> int:
        """Mark ``device_id`` issued (first claim, or the first after a revocation); returns its generation."""
        record = self._records.get(device_id)
        if record is not None and record.issued:
            return record.generation
        generation = 1 if record is None else record.generation
        self._write(device_id, generation, issued=True)
        return generation

    def revoke(self, device_id: str) -> bool:
        """Void every credential of ``device_id`` and let it be claimed afresh; False when it had none."""
        record = self._records.get(device_id)
        if record is None or not record.issued:
            return False
        self._write(device_id, record.generation + 1, issued=False)
        return True

    def _write(self, device_id: str, generation: int, *, issued: bool) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO devices (device_id, generation, issued, changed_at_s) VALUES (?, ?, ?, ?)",
            (device_id, generation, int(issued), time.time()),
        )
        self._records[device_id] = DeviceRecord(generation, issued)

    def close(self) -> None:
        self._db.close()
