"""`deadline(seconds)`: stop the work of a pool worker process when its time is up, so a request whose
caller has given up (its deadline passed) no longer keeps a worker busy.

Used inside a worker's main thread (process pools run their tasks there): a timer signal raises
`DeadlineExceeded` in the running Python code, which unwinds the task and frees the worker for the next.
Elsewhere (another thread, no SIGALRM) it does nothing and the caller's own timeout still applies.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class DeadlineExceeded(Exception):
    """The work ran past its deadline and was stopped."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    usable = seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
    if not usable or threading.current_thread() is not threading.main_thread():
        yield
        return
    assert seconds is not None

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"stopped after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
