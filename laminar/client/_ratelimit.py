"""A token bucket: how a Worker keeps to `rate_per_s` calls a second. Pure: the caller passes the time."""

from __future__ import annotations

from laminar import limits
from laminar.errors import InvalidRequest


class RateLimit:
    """`take(now_s)` spends one token and returns 0, or returns the seconds until a token is there (spending
    nothing). The bucket holds `burst_ms` worth of tokens (at least one) and starts full."""

    def __init__(self, rate_per_s: float, burst_ms: int) -> None:
        if not 0 < rate_per_s <= limits.WORKER_RATE_PER_S_MAX:
            raise InvalidRequest(f"rate_per_s must be in (0, {limits.WORKER_RATE_PER_S_MAX}], got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s * burst_ms / 1000)
        self._tokens = self.capacity
        self._at_s: float | None = None

    def take(self, now_s: float) -> float:
        if self._at_s is not None:
            self._tokens = min(self.capacity, self._tokens + (now_s - self._at_s) * self.rate_per_s)
        self._at_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s
