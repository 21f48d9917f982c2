"""Per-connection token bucket: ``RATE_LIMIT_BURST`` tokens, refilled at ``RATE_LIMIT_RPS`` per second."""

from __future__ import annotations

import math
from typing import Final

# float sums of refills drift below whole tokens; a client paced exactly at the rate must still pass
TOKEN_EPSILON: Final = 1e-9


class TokenBucket:
    """Pure: the caller passes the clock, so tests need no sleeping."""

    __slots__ = ("_tokens", "_updated_s", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, now_s: float) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._updated_s = now_s

    def try_acquire(self, now_s: float) -> int:
        """Take one token: 0 when allowed, else the milliseconds until one is available (at least 1)."""
        elapsed_s = now_s - self._updated_s
        if elapsed_s > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed_s * self.rate_per_s)
            self._updated_s = now_s
        if self._tokens >= 1.0 - TOKEN_EPSILON:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self.rate_per_s * 1000.0 - TOKEN_EPSILON))

    @property
    def tokens(self) -> float:
        return self._tokens
