"""Per-API-key token buckets (A16).

`RateLimiter` keeps the buckets in the process: exact for one API process (SQLite runs one). With several API
processes or hosts on PostgreSQL, `SharedRateLimiter` makes one key's limit hold across all of them: the bucket
is a row of ``rate_limit_bucket``, and a process *leases* tokens from it a few at a time (about
``lease_seconds`` of the key's rate, at most the burst) with one atomic statement, then spends them locally
without touching the database. The database's clock refills the row, so hosts' clocks need not agree.

Every token a process spends came out of the shared row, so N processes admit at most what one bucket would,
plus the leased tokens a process still holds from an earlier moment: a lease is spent within ``hold_seconds``
or dropped, so the tolerance is at most one lease per process (≈ rate × 0.05 s, e.g. 10 requests at 200/s).
Tokens a process leased but did not spend in time are lost, which errs towards refusing. A refused lease is
remembered until the next token is due, so a flood over the limit is refused without a statement per request.
If the database cannot be asked, the process falls back to its own bucket for that request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..db import Database

log = logging.getLogger("promoflow.api")


def _count_refusal() -> None:
    from ..observability import metrics

    metrics.get().rate_limited.inc()


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
    """The buckets of this process alone."""

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
        if wait == 0:
            return 0
        _count_refusal()
        return max(1, math.ceil(wait))

    async def acquire(self, tenant_id: uuid.UUID, key: object, rate: float, burst: int) -> int:
        return self.check(key, rate, burst)


# One statement per lease. The row starts full (minus this lease); the refill is computed from the row's last
# change to the database's clock (never backwards: a statement that waited for the row lock may carry an
# earlier time than the one before it), capped at the burst; the lease takes what it wants, or what is there.
_LEASE = """
WITH t AS (SELECT clock_timestamp() AS now)
INSERT INTO rate_limit_bucket AS b (key_id, tenant_id, tokens, granted, updated_at)
SELECT %(k)s, %(t)s, %(burst)s - least(%(want)s, %(burst)s), least(%(want)s, %(burst)s), t.now FROM t
ON CONFLICT (key_id) DO UPDATE SET
  granted = least(%(want)s, floor(least(%(burst)s::float8,
      b.tokens + %(rate)s * greatest(0, extract(epoch FROM excluded.updated_at - b.updated_at)::float8)))),
  tokens = least(%(burst)s::float8,
      b.tokens + %(rate)s * greatest(0, extract(epoch FROM excluded.updated_at - b.updated_at)::float8))
    - least(%(want)s, floor(least(%(burst)s::float8,
      b.tokens + %(rate)s * greatest(0, extract(epoch FROM excluded.updated_at - b.updated_at)::float8)))),
  updated_at = greatest(b.updated_at, excluded.updated_at)
RETURNING granted, tokens
"""


class _Lease:
    __slots__ = ("expires", "refused_until", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.refused_until = 0.0


class SharedRateLimiter:
    """One bucket per key for every process on the database (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 0.05,
        hold_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.hold_seconds = hold_seconds
        self._monotonic = monotonic
        self._leases: dict[uuid.UUID, _Lease] = {}
        self._inflight: dict[uuid.UUID, asyncio.Future[None]] = {}
        self._fallback = RateLimiter(monotonic)

    def lease_size(self, rate: float, burst: int) -> int:
        return max(1, min(burst, int(rate * self.lease_seconds)))

    async def acquire(self, tenant_id: uuid.UUID, key: object, rate: float, burst: int) -> int:
        """0 if allowed; otherwise the whole seconds to wait (for ``Retry-After``)."""
        if rate <= 0:
            return 0
        if not isinstance(key, uuid.UUID):
            return self._fallback.check(key, rate, burst)
        while True:
            now = self._monotonic()
            lease = self._leases.get(key)
            if lease is not None:
                if lease.tokens >= 1 and now < lease.expires:
                    lease.tokens -= 1
                    return 0
                if now < lease.refused_until:
                    _count_refusal()
                    return max(1, math.ceil(lease.refused_until - now))
            pending = self._inflight.get(key)
            if pending is not None:  # another request of this process is leasing for this key: use its lease
                await asyncio.shield(pending)
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._inflight[key] = done
            try:
                ok = await self._lease(tenant_id, key, rate, burst)
            finally:
                del self._inflight[key]
                done.set_result(None)
            if not ok:
                return self._fallback.check(key, rate, burst)

    async def _lease(self, tenant_id: uuid.UUID, key: uuid.UUID, rate: float, burst: int) -> bool:
        from ..observability import metrics

        m = metrics.get()
        params = {
            "k": key,
            "t": tenant_id,
            "want": self.lease_size(rate, burst),
            "burst": burst,
            "rate": rate,
        }
        try:
            async with self.db.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row: Any = (await auto.exec_driver_sql(_LEASE, params)).one()
            granted, tokens = int(row[0]), float(row[1])
        except Exception:
            log.warning("ratelimit.lease_failed key=%s", key, exc_info=True)
            m.rate_limit_leases.labels("error").inc()
            return False
        now = self._monotonic()
        if len(self._leases) > 10_000:
            self._leases.clear()
        lease = self._leases.get(key) or self._leases.setdefault(key, _Lease())
        if granted >= 1:
            m.rate_limit_leases.labels("granted").inc()
            lease.tokens, lease.expires, lease.refused_until = int(granted), now + self.hold_seconds, 0.0
        else:
            m.rate_limit_leases.labels("empty").inc()
            lease.tokens, lease.refused_until = 0, now + (1 - float(tokens)) / rate
        return True


def limiter_for(settings: Settings, db: Database) -> RateLimiter | SharedRateLimiter:
    """Shared on PostgreSQL (unless turned off); the process's own buckets on SQLite (one process, exact)."""
    if not db.sqlite and settings.rate_limit_shared:
        return SharedRateLimiter(db)
    return RateLimiter()
