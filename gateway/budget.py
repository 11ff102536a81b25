"""Per-call budgets where input enters: a token bucket for things a caller may do only so
often (typed turns on `/ws`)."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """`take()` is True at most `burst` times at once and `rate` times a second after that.

    `now` gives the time in seconds (the call's clock)."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = float(burst)
        self._now = now
        self._tokens = self.burst
        self._t = now()
        self.refused = 0  # takes refused so far

    def take(self) -> bool:
        t = self._now()
        self._tokens = min(self.burst, self._tokens + (t - self._t) * self.rate)
        self._t = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False
