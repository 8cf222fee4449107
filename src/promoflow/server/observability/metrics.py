"""The Prometheus metrics every promoflow process records (documented one by one in docs/operators.md).

They are created on first use (`get`), not at import: in multiprocess mode prometheus-client opens its files
when a metric is created, and the process entry point must have prepared (emptied) the directory before
(`observability.multiproc.prepare`). Labels are bounded: routes are templates, reasons are error codes, kinds
and outcomes are fixed sets; no tenant, contact or id ever becomes a label.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# Request latency: a checkout answers in milliseconds; the top buckets catch imports of the UI and overload.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        # HTTP (the middleware in observability.http)
        self.requests = Counter(
            "promoflow_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
        )
        self.latency = Histogram(
            "promoflow_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
        )
        self.redeems = Counter(
            "promoflow_redeem_total",
            "Redemptions by source (api: redeem requests; receipt: usedPromotions of receipts; file: lines of "
            "redemption files), outcome (redeemed, already_redeemed, refused, replayed, error) and, for refusals, "
            "the reason: the error code of the rule that refused (PromotionExpired, …), or a file line's verdict.",
            ["outcome", "reason", "source"],
        )
        self.rate_limited = Counter(
            "promoflow_rate_limited_total",
            "Requests refused with 429 because their API key was over its limit.",
        )
        self.rate_limit_leases = Counter(
            "promoflow_rate_limit_leases_total",
            "Token leases the shared (PostgreSQL) rate limiter asked the database for, by result "
            "(granted, empty, error).",
            ["result"],
        )
        # Jobs and imports (the worker)
        self.job_duration = Histogram(
            "promoflow_job_duration_seconds",
            "Time a worker spent on a job, by kind and outcome (succeeded, failed, retry, released, lost).",
            ["kind", "outcome"],
            buckets=JOB_BUCKETS,
        )
        self.job_failures = Counter(
            "promoflow_job_failures_total",
            "Job attempts that raised, by kind; permanent=true when the job will not be retried.",
            ["kind", "permanent"],
        )
        self.import_records = Counter(
            "promoflow_import_records_total",
            "Records (lines) of imported files given a verdict, by file kind and verdict.",
            ["kind", "verdict"],
        )
        # The 'shown' ledger buffer (receipt.shown)
        self.shown_buffered = Gauge(
            "promoflow_shown_buffered_views",
            "Fetch answers waiting in the 'shown' buffer to be written (sampled each second).",
            multiprocess_mode="livesum",
        )
        self.shown_written = Counter(
            "promoflow_shown_views_written_total", "'Shown' views written to the database."
        )
        self.shown_dropped = Counter(
            "promoflow_shown_views_dropped_total", "'Shown' views dropped because the buffer was full."
        )
        self.shown_flush = Histogram(
            "promoflow_shown_flush_duration_seconds",
            "Time one write of the 'shown' buffer took.",
            buckets=FLUSH_BUCKETS,
        )
        self.shown_flush_failures = Counter(
            "promoflow_shown_flush_failures_total",
            "Writes of the 'shown' buffer that failed (kept for the next).",
        )
        # Database connection pools (sampled each second)
        self.pool_connections = Gauge(
            "promoflow_db_pool_connections",
            "Database connections of the process pools, by pool (main, fastlane) and state (in_use, idle).",
            ["pool", "state"],
            multiprocess_mode="livesum",
        )
        self.pool_capacity = Gauge(
            "promoflow_db_pool_capacity",
            "Connections a pool may open (pool size plus overflow), by pool.",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[str, ...], Any] = {}
        # Answered requests not yet handed to prometheus-client: (method, route, status) → [count, seconds,
        # count per latency bucket].
        self._tally: dict[tuple[str, str, int], list[Any]] = {}
        self._answered: dict[
            tuple[str, str], int
        ] = {}  # redeem requests' outcomes: (outcome, reason) → count

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request, tallied: `flush` hands the tally to the counter and the histogram (an
        observation of prometheus-client costs microseconds, more in multiprocess mode, where each is a write to
        the process's file; the request path pays a dict look-up and three additions)."""
        tally = self._tally.get((method, route, status))
        if tally is None:
            tally = self._tally[(method, route, status)] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def answered(self, outcome: str, reason: str = "") -> None:
        """The outcome of a redeem request (source ``api``), tallied like the requests."""
        self._answered[(outcome, reason)] = self._answered.get((outcome, reason), 0) + 1

    def flush(self) -> None:
        """Hand the tallied requests and redeem outcomes to prometheus-client. The front layer calls it when no
        request is in flight, the sampler each second, a scrape before it reads: a scrape misses at most the last
        second of a busy process, and nothing of an idle one."""
        tally, self._tally = self._tally, {}
        answered, self._answered = self._answered, {}
        for (outcome, reason), count in answered.items():
            self.redeem(outcome, reason, n=count)
        for (method, route, status), (count, seconds, buckets) in tally.items():
            self.requests.labels(method, route, str(status)).inc(count)
            # What `observe` adds, in bulk: the sum, and each bucket's count (prometheus-client's own values).
            latency = self.latency.labels(method, route)
            latency._sum.inc(seconds)
            for i, n in enumerate(buckets):
                if n:
                    latency._buckets[i].inc(n)

    def redeem(self, outcome: str, reason: str = "", source: str = "api", n: int = 1) -> None:
        key = ("redeem", outcome, reason, source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.redeems.labels(outcome, reason, source)
        child.inc(n)

    def job(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(kind, outcome).observe(seconds)

    def job_failed(self, kind: str, permanent: bool) -> None:
        self.job_failures.labels(kind, "true" if permanent else "false").inc()


_metrics: Metrics | None = None
_lock = threading.Lock()


def get() -> Metrics:
    """The process's metrics (created on first use, registered in prometheus-client's default registry)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                disable_created_metrics()  # no `_created` series: they double the output and nobody graphs them
                _metrics = Metrics()
    return _metrics
