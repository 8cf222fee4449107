"""Per-API-key token buckets (A16). In-process: with N API processes each enforces the limit on its own share
of the traffic (a load balancer spreads a key's requests, so the effective limit is about N × the setting)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[object, TokenBucket] = {}
        self._lock = threading.Lock()
        self._monotonic = monotonic

    def check(self, key: object, rate: float, burst: int) -> int:
        """0 if allowed; otherwise the whole seconds to wait (for ``Retry-After``)."""
        if rate <= 0:
            return 0
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = self._buckets[key] = TokenBucket(rate, burst, now)
            wait = bucket.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
