"""Progress lines while the demo runs, and the measured-versus-simulated table at the end."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Final

METRICS: Final = (
    ("rt60_s", "RT60 s", 2),
    ("edt_s", "EDT s", 2),
    ("c50_db", "C50 dB", 1),
    ("c80_db", "C80 dB", 1),
    ("drr_db", "DRR dB", 1),
    ("sti", "STI", 2),
)


class Progress:
    """Timestamped lines, one per step; on a terminal the current wait is kept on a status line."""

    def __init__(self, out: IO[str] = sys.stdout) -> None:
        self.out = out
        self.started = time.monotonic()
        self.tty = out.isatty()
        self._status = ""

    def _clear_status(self) -> None:
        if self.tty and self._status:
            self.out.write("\r\x1b[2K")

    def report(self, who: str, text: str) -> None:
        self._clear_status()
        self.out.write(f"[{time.monotonic() - self.started:6.1f}s] {who:<10} {text}\n")
        if self.tty and self._status:
            self.out.write(self._status)
        self.out.flush()

    def status(self, text: str) -> None:
        """The line saying what the session waits for (only drawn on a terminal)."""
        if not self.tty:
            return
        self._clear_status()
        self._status = f"  ... {text}"
        self.out.write(self._status)
        self.out.flush()

    def done(self) -> None:
        self._clear_status()
        self._status = ""
        self.out.flush()


@dataclass(frozen=True)
class PairRow:
    speaker_slot_id: str
    mic_slot_id: str
    measured: dict[str, Any]
    simulated: dict[str, Any]


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _diff(measured: Any, simulated: Any, digits: int) -> str:
    if measured is None or simulated is None:
        return "-"
    return f"{measured - simulated:+.{digits}f}"


def render_table(rows: list[PairRow]) -> str:
    """One row per (speaker slot, microphone slot): measured / simulated / difference per metric."""
    header = ["speaker", "mic"] + [label for _, label, _ in METRICS]
    lines = [header, ["", ""] + ["meas / sim / diff"] * len(METRICS)]
    for row in rows:
        cells = [row.speaker_slot_id, row.mic_slot_id]
        for key, _, digits in METRICS:
            m, s = row.measured.get(key), row.simulated.get(key)
            cells.append(f"{_fmt(m, digits)} / {_fmt(s, digits)} / {_diff(m, s, digits)}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines]
    rendered.insert(2, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)
