"""The worker: claims jobs, runs their handler, records the outcome; recovers stalled jobs; stops gracefully:
claims no new job, and the job in hand stops at its next safe point (a committed batch or chunk) and goes back
to the queue, where the next worker resumes it at once — a long import does not hold a shutdown for minutes,
and no stall timeout has to pass before it goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ...kit.clock import Clock
from ..config import Settings
from ..db import Database
from ..models import tenant
from ..tenant.service import TenantContext, context_from_row
from . import queue

if TYPE_CHECKING:
    from ..features import Composition

log = logging.getLogger("promoflow.worker")


class PermanentJobError(Exception):
    """A job that can never succeed (bad input): fail it now instead of retrying."""


class JobLost(Exception):
    """The job was recovered by another worker while this one still ran it: stop, record nothing."""


class Interrupted(Exception):
    """The worker is stopping and the job stopped at a safe point: it goes back to the queue, not failed."""


@dataclass
class JobContext:
    db: Database
    clock: Clock
    row: Any
    tenant: TenantContext
    worker: str
    settings: Settings
    composition: Composition
    stopping: Callable[[], bool] = lambda: False
    """True once the worker is asked to stop: a long job checks it where it can stop safely."""

    def stop_if_asked(self) -> None:
        """Call at a safe point (everything so far committed, the job resumable from there)."""
        if self.stopping():
            raise Interrupted(f"job {self.row.public_id} stopped: the worker is shutting down")

    @property
    def appliers(self) -> Any:
        """The file appliers by file kind (`transfer.importer.ApplierFactory`)."""
        return self.composition.appliers

    @property
    def payload(self) -> dict[str, Any]:
        return dict(self.row.payload)

    def now(self) -> datetime:
        return self.clock.now()

    async def progress(self, done: int, total: int | None = None) -> None:
        async with self.db.write() as conn:
            if not await queue.heartbeat(conn, self.row.id, self.worker, self.now(), done, total):
                raise JobLost(f"job {self.row.public_id} was taken over by another worker")
        self.stop_if_asked()


Handler = Callable[[JobContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HousekeepingContext:
    db: Database
    settings: Settings
    now: datetime
    scheduling: bool
    """True in processes started as a server (`serve`, `worker`): they run the scheduled work (exports, file
    sweeps); a worker built in a test or inside `promoflow api` does not."""


Housekeeping = Callable[[HousekeepingContext], Awaitable[None]]


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        settings: Settings | None = None,
        composition: Composition | None = None,
        poll_seconds: float = 0.5,
        stall_after: timedelta = timedelta(minutes=2),
        schedule: bool = False,
        name: str | None = None,
    ) -> None:
        from .. import hooks
        from ..features import default_composition

        self.db = db
        self.clock = clock
        self.settings = settings or Settings()
        self.composition = composition or default_composition()
        self.schedule = schedule
        hooks.install(self.composition)
        self.poll_seconds = poll_seconds
        self.stall_after = stall_after
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_housekeeping: datetime | None = None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for work now (an enqueue in this process)."""
        self._wake.set()

    async def run(self) -> None:
        log.info("worker.started name=%s", self.name)
        while not self._stop.is_set():
            try:
                did = await self.run_once()
            except Exception:
                log.exception("worker.loop_error")
                did = False
            if not did:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        log.info("worker.stopped name=%s", self.name)

    async def run_until_idle(self, max_jobs: int = 10_000) -> int:
        """Run jobs until none is runnable (for tests and one-shot CLI use)."""
        n = 0
        while n < max_jobs and await self.run_once():
            n += 1
        return n

    async def _housekeeping(self, now: datetime) -> None:
        if self._last_housekeeping is not None and now - self._last_housekeeping < timedelta(seconds=30):
            return
        self._last_housekeeping = now
        async with self.db.write() as conn:
            recovered = await queue.recover_stalled(conn, now, self.stall_after)
        if recovered:
            log.warning("worker.recovered_stalled count=%d", recovered)
        hk = HousekeepingContext(self.db, self.settings, now, self.schedule)
        for task in self.composition.housekeeping:
            try:
                await task(hk)
            except Exception:
                log.exception("worker.housekeeping_failed task=%s", getattr(task, "__name__", task))

    async def run_once(self) -> bool:
        now = self.clock.now()
        await self._housekeeping(now)
        async with self.db.write() as conn:
            row = await queue.claim(conn, self.name, now)
            if row is None:
                return False
            trow = (await conn.execute(select(tenant).where(tenant.c.id == row.tenant_id))).first()
        ctx = JobContext(
            self.db, self.clock, row, context_from_row(trow), self.name, self.settings, self.composition,
            self._stop.is_set,
        )  # fmt: skip
        fn = self.composition.jobs.get(row.kind)
        log.info("job.started id=%s kind=%s attempt=%d", row.public_id, row.kind, row.attempts)
        started = time.perf_counter()
        try:
            if fn is None:
                raise PermanentJobError(f"no handler for job kind {row.kind!r}")
            result = await fn(ctx)
        except JobLost as exc:
            log.warning("job.lost id=%s kind=%s: %s", row.public_id, row.kind, exc)
            _observe(row.kind, "lost", started)
            return True
        except Interrupted:
            async with self.db.write() as conn:
                released = await queue.release(conn, row.id, self.name, self.clock.now())
            log.info("job.released id=%s kind=%s released=%s", row.public_id, row.kind, released)
            _observe(row.kind, "released", started)
            return True
        except (PermanentJobError, Exception) as exc:
            permanent = isinstance(exc, PermanentJobError)
            log.warning("job.failed id=%s kind=%s permanent=%s error=%s", row.public_id, row.kind, permanent, exc)
            detail = str(exc) if permanent else "".join(traceback.format_exception_only(exc)).strip()
            async with self.db.write() as conn:
                await queue.fail(conn, row, self.name, self.clock.now(), detail, permanent=permanent)
            final = permanent or row.attempts >= row.max_attempts
            _observe(row.kind, "failed" if final else "retry", started, failed=final)
            return True
        async with self.db.write() as conn:
            await queue.succeed(conn, row.id, self.name, self.clock.now(), result)
        log.info("job.succeeded id=%s kind=%s", row.public_id, row.kind)
        _observe(row.kind, "succeeded", started)
        return True


def _observe(kind: str, outcome: str, started: float, *, failed: bool | None = None) -> None:
    """The job's duration by outcome; an attempt that raised also counts as a failure (``failed``: for good)."""
    from ..observability import metrics

    m = metrics.get()
    m.job(kind, outcome, time.perf_counter() - started)
    if failed is not None:
        m.job_failed(kind, permanent=failed)
