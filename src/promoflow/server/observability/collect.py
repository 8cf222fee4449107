"""What /metrics reads besides the counters: figures from the database, read when scraped (and reused for
``metrics_db_cache_seconds``, so frequent scrapers and /readyz do not load the database), and figures of this
process (connection pools, the 'shown' buffer), sampled each second into gauges so that in multiprocess mode
every process's share is in the shared files, not only the share of the process answering the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import job
from . import metrics as metrics_mod
from . import multiproc

if TYPE_CHECKING:
    from ..http.edge import AppState

log = logging.getLogger("promoflow.metrics")

STATE_KEY = "observability"
QUEUE_KEY = "observability.queue"
FILE_IMPORT_JOB = "file_import"  # transfer.inbox.FILE_IMPORT_JOB (a test keeps the two equal)


@dataclass
class QueueFigures:
    """The job table's queued and running jobs, read at one moment."""

    at: datetime
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) → jobs
    oldest_created: dict[str, datetime] = field(default_factory=dict)  # kind → oldest queued job's creation
    oldest_due: dict[str, datetime] = field(default_factory=dict)  # kind → earliest run_after of queued jobs
    # kind → since when the longest-waiting job a free worker could take now has been takeable
    oldest_runnable: dict[str, datetime] = field(default_factory=dict)

    def waiting_age(self, kind: str) -> float:
        """Seconds the oldest queued job of ``kind`` has waited since it was enqueued (0: none waiting)."""
        first = self.oldest_created.get(kind)
        return max(0.0, (self.at - first).total_seconds()) if first else 0.0

    def lag(self, kind: str | None = None) -> float:
        """Seconds the oldest *due* queued job (of ``kind``, or of any kind) is late — also one that waits, as
        it must, for an earlier job of its queue (a tenant's next file behind its running import)."""
        dues = [d for k, d in self.oldest_due.items() if kind is None or k == kind]
        return max(0.0, (self.at - min(dues)).total_seconds()) if dues else 0.0

    def runnable_lag(self, kind: str | None = None) -> float:
        """Seconds the longest-waiting job that a free worker could take now (due, and no earlier job of its
        queue queued or running) has waited for one, counted from when it became takeable: its due time, or the
        end of the job before it in its queue if that came later. Only more workers (or live ones) shorten it."""
        since = [d for k, d in self.oldest_runnable.items() if kind is None or k == kind]
        return max(0.0, (self.at - min(since)).total_seconds()) if since else 0.0


class QueueSnapshot:
    """The queue figures, read from the database at most once per ``ttl`` seconds."""

    def __init__(self, state: AppState, ttl: float) -> None:
        self.state = state
        self.ttl = ttl
        self.figures: QueueFigures | None = None
        self.ok = False
        self._read_at = -1e18
        self._lock = asyncio.Lock()

    async def get(self) -> QueueFigures | None:
        if time.monotonic() - self._read_at < self.ttl:
            return self.figures if self.ok else None
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                try:
                    self.figures = await self._read()
                    self.ok = True
                except Exception:
                    log.warning("metrics.queue_read_failed", exc_info=True)
                    self.ok = False
                self._read_at = time.monotonic()
        return self.figures if self.ok else None

    async def _read(self) -> QueueFigures:
        now = self.state.clock.now()
        stmt = (
            select(
                job.c.kind, job.c.status, func.count(), func.min(job.c.created_at), func.min(job.c.run_after)
            )
            .where(job.c.status.in_(("queued", "running")))
            .group_by(job.c.kind, job.c.status)
        )
        figures = QueueFigures(at=now)
        async with self.state.db.read() as conn:
            for kind, status, n, created, due in await conn.execute(stmt):
                figures.counts[(kind, status)] = int(n)
                if status == "queued":
                    figures.oldest_created[kind] = created
                    figures.oldest_due[kind] = due
            if any(status == "queued" for _, status in figures.counts):
                figures.oldest_runnable = await runnable_since(conn, now)
        return figures


async def runnable_since(conn: AsyncConnection, now: datetime) -> dict[str, datetime]:
    """Per kind, since when the longest-waiting job a free worker could claim now (``worker.queue.claim``'s
    rule) has been claimable. A job of a queue became claimable when the job before it ended (jobs of a queue
    run one after the other, in id order), so that end counts when it is later than the job's due time: a file
    that waited behind its tenant's long import waits for a worker only from the import's end."""
    out: dict[str, datetime] = {}
    free = (
        select(job.c.kind, func.min(job.c.run_after))
        .where(job.c.status == "queued", job.c.run_after <= now, job.c.queue.is_(None))
        .group_by(job.c.kind)
    )
    for kind, since in await conn.execute(free):
        out[kind] = since
    e, p, q = job.alias("e"), job.alias("p"), job.alias("q")
    blocked = (
        select(e.c.id)
        .where(e.c.queue == job.c.queue, e.c.id < job.c.id, e.c.status.in_(("queued", "running")))
        .exists()
    )

    def ended(status: str) -> Any:
        # The last earlier job of the queue that ended this way: one probe of ix_job_queue (queue, status, id).
        last = (
            select(p.c.id)
            .where(p.c.queue == job.c.queue, p.c.status == status, p.c.id < job.c.id)
            .order_by(p.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        return select(q.c.finished_at).where(q.c.id == last).scalar_subquery()

    heads = select(job.c.kind, job.c.run_after, ended("succeeded"), ended("failed")).where(
        job.c.status == "queued", job.c.run_after <= now, job.c.queue.is_not(None), ~blocked
    )
    for kind, due, succeeded, failed in await conn.execute(heads):  # at most one row per queue
        since = max(t for t in (due, succeeded, failed) if t is not None)
        out[kind] = min(out.get(kind, since), since)
    return out


def queue_snapshot(state: AppState) -> QueueSnapshot:
    """The process's one snapshot of the queue, shared by /metrics and /readyz."""
    snap = state.extras.get(QUEUE_KEY)
    if snap is None:
        snap = state.extras[QUEUE_KEY] = QueueSnapshot(state, state.settings.metrics_db_cache_seconds)
    return snap


class QueueCollector(Collector):
    """Turns the last figures into metric families when a scrape collects them."""

    def __init__(self, snapshot: QueueSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "promoflow_queue_up", "1 when the queue figures could be read from the database."
        )
        up.add_metric([], 1.0 if self.snapshot.ok else 0.0)
        yield up
        f = self.snapshot.figures if self.snapshot.ok else None
        if f is None:
            return
        jobs = GaugeMetricFamily(
            "promoflow_jobs", "Jobs queued or running, by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(f.counts.items()):
            jobs.add_metric([kind, status], n)
        yield jobs
        lag = GaugeMetricFamily(
            "promoflow_job_queue_lag_seconds",
            "How late the oldest due queued job of each kind is (0 when none is due).",
            labels=["kind"],
        )
        for kind in sorted({k for k, _ in f.counts}):
            lag.add_metric([kind], f.lag(kind))
        yield lag
        runnable = GaugeMetricFamily(
            "promoflow_job_runnable_lag_seconds",
            "How long the longest-waiting job a free worker could take now (due, no earlier job of its queue "
            "queued or running) has waited for one, by kind (0 when none waits).",
            labels=["kind"],
        )
        for kind in sorted({k for k, _ in f.counts}):
            runnable.add_metric([kind], f.runnable_lag(kind))
        yield runnable
        files = GaugeMetricFamily(
            "promoflow_import_queue_files",
            "Uploaded files waiting (queued) or being imported (running).",
            labels=["status"],
        )
        for status in ("queued", "running"):
            files.add_metric([status], f.counts.get((FILE_IMPORT_JOB, status), 0))
        yield files
        age = GaugeMetricFamily(
            "promoflow_import_queue_oldest_age_seconds",
            "Seconds the oldest waiting file has waited since its upload completed (0 when none waits).",
        )
        age.add_metric([], f.waiting_age(FILE_IMPORT_JOB))
        yield age


# ------------------------------------------------------------------------------------------ sampling


def sample(state: AppState) -> None:
    """This process's tallied requests into their metrics, its pools and 'shown' buffer into their gauges."""
    m = metrics_mod.get()
    m.flush()
    pool = state.db.engine.pool
    with contextlib.suppress(AttributeError, TypeError):
        in_use = pool.checkedout()  # type: ignore[attr-defined]
        m.pool_connections.labels("main", "in_use").set(in_use)
        m.pool_connections.labels("main", "idle").set(pool.checkedin())  # type: ignore[attr-defined]
        m.pool_capacity.labels("main").set(pool.size() + max(0, getattr(pool, "_max_overflow", 0)))  # type: ignore[attr-defined]
    # The fast paths' pools: the lane's (asyncpg) and the quick paths' (psycopg), as one.
    pools: list[Any] = [
        state.extras.get("fastlane"),
        getattr(state.extras.get("fastlane.lane"), "pool", None),
    ]
    fast = [p.usage() for p in pools if hasattr(p, "usage")]
    if fast:
        in_use, idle, capacity = (sum(n) for n in zip(*fast, strict=True))
        m.pool_connections.labels("fastlane", "in_use").set(in_use)
        m.pool_connections.labels("fastlane", "idle").set(idle)
        m.pool_capacity.labels("fastlane").set(capacity)
    shown = state.extras.get("receipt.shown")
    m.shown_buffered.set(len(shown) if shown is not None else 0)


class Observability:
    """Per app: the queue snapshot, the sampler task, and the exposition of /metrics."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.snapshot = queue_snapshot(state)
        self.queue_registry = CollectorRegistry(auto_describe=False)
        self.queue_registry.register(QueueCollector(self.snapshot))
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="promoflow-metrics-sampler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        metrics_mod.get().flush()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sample(self.state)
            except Exception:  # a gauge must never stop the sampler
                log.warning("metrics.sample_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def exposition(self) -> bytes:
        sample(self.state)
        await self.snapshot.get()
        directory = multiproc.active_dir()
        return await asyncio.to_thread(_render, directory, self.queue_registry)


def _render(directory: str | None, queue_registry: CollectorRegistry) -> bytes:
    if directory is not None:
        multiproc.mark_dead_processes(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    return out + generate_latest(queue_registry)
