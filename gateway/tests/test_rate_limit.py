"""The token bucket, with an explicit clock."""

from __future__ import annotations

import pytest

from sonalyze_gateway.rate_limit import TokenBucket


class TestTokenBucket:
    def test_a_full_bucket_allows_the_burst_then_refuses(self) -> None:
        bucket = TokenBucket(rate_per_s=10.0, burst=20, now_s=0.0)
        assert [bucket.try_acquire(0.0) for _ in range(20)] == [0] * 20
        assert bucket.try_acquire(0.0) == 100  # one token takes 1/10 s

    def test_retry_after_is_the_time_until_the_next_token(self) -> None:
        bucket = TokenBucket(rate_per_s=4.0, burst=1, now_s=0.0)
        assert bucket.try_acquire(0.0) == 0
        assert bucket.try_acquire(0.1) == 150  # 0.4 token there, 0.6 missing at 4/s

    def test_tokens_refill_at_the_rate(self) -> None:
        bucket = TokenBucket(rate_per_s=10.0, burst=5, now_s=0.0)
        for _ in range(5):
            bucket.try_acquire(0.0)
        assert bucket.try_acquire(0.05) == 50  # half a token there
        assert bucket.try_acquire(0.15) == 0  # one and a half by now

    def test_refill_stops_at_the_burst(self) -> None:
        bucket = TokenBucket(rate_per_s=10.0, burst=3, now_s=0.0)
        allowed = [bucket.try_acquire(1000.0) for _ in range(4)]
        assert allowed[:3] == [0, 0, 0] and allowed[3] > 0

    def test_paced_sender_under_the_rate_is_never_refused(self) -> None:
        bucket = TokenBucket(rate_per_s=10.0, burst=1, now_s=0.0)
        assert all(bucket.try_acquire(i * 0.1) == 0 for i in range(100))

    def test_a_clock_going_backwards_adds_no_tokens(self) -> None:
        bucket = TokenBucket(rate_per_s=10.0, burst=1, now_s=5.0)
        assert bucket.try_acquire(5.0) == 0
        assert bucket.try_acquire(4.0) > 0

    def test_retry_after_is_at_least_one_ms(self) -> None:
        bucket = TokenBucket(rate_per_s=1e6, burst=1, now_s=0.0)
        bucket.try_acquire(0.0)
        assert bucket.try_acquire(0.0) == 1

    @pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
    def test_nonsense_settings_are_refused(self, rate: float, burst: int) -> None:
        with pytest.raises(ValueError):
            TokenBucket(rate_per_s=rate, burst=burst, now_s=0.0)
