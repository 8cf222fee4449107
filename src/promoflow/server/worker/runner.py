"""The worker: claims jobs, runs their handlers, records the outcome; recovers stalled jobs; stops gracefully.

**Many jobs, fair turns.** A worker holds up to ``hold`` claimed jobs at once (at most one per queue: a tenant's
files still run one at a time, in upload order) and lets ``concurrency`` of them (``worker_concurrency``) run at
any moment. A job gives its turn away at every safe point where another held job is waiting for one (an import:
between two batches; a bulk assignment: between two chunks), and takes the next free turn, in order. So one
tenant's big file does not hold up another tenant's small one: with one turn, the small file runs between two
batches of the big one. Beyond its first ``concurrency`` jobs a worker takes only jobs that have been due for a poll
interval (``grace``), so that on PostgreSQL an idle worker gets the next job before a busy one holds it in
reserve; and a worker whose turns are all taken looks for such jobs at most every ``BUSY_POLL_SECONDS``.

**Housekeeping** (recovering stalled jobs, then the features' tasks: the export schedule, file sweeps, …) runs on
ticks derived from the settings: stalled jobs are looked for every quarter of ``worker_stall_seconds`` (so a
stalled job is taken over at most a quarter of that after it stalled), the features' tasks every quarter of
``export_interval_seconds``; neither less often than every 30 s.

**Stopping**: it claims no new job, and each job in hand stops at its next safe point (a committed batch or
chunk) and goes back to the queue, where the next worker resumes it at once — a long import does not hold a
shutdown for minutes, and no stall timeout has to pass before it goes on. An import's batches are kept to about
``import_batch_seconds`` each (`transfer.importer._Pace`), so that is about what a stop waits for; housekeeping
under way (the retention purge) ends after its current batch, and the tasks not yet started wait for the next
pass."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from ...kit.clock import Clock
from ...kit.errtext import error_line
from ..config import Settings
from ..db import Database
from ..models import job, tenant
from ..tenant.service import TenantContext, context_from_row
from . import queue, wakeup

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
    turn: Turn | None = None
    """This job's share of the worker's turns (None: the job runs alone)."""

    def stop_if_asked(self) -> None:
        """Call at a safe point (everything so far committed, the job resumable from there)."""
        if self.stopping():
            raise Interrupted(f"job {self.row.public_id} stopped: the worker is shutting down")

    @contextlib.asynccontextmanager
    async def off_turn(self) -> AsyncIterator[None]:
        """For work that does not touch the database and runs in a thread (reading a whole file): the job's turn
        is free for another job meanwhile; the job takes the next free one after."""
        if self.turn is None or not self.turn.held:
            yield
            return
        self.turn.give()
        try:
            yield
        finally:
            await self.turn.take()

    async def checkpoint(self, before_stopping: Callable[[], Awaitable[None]] | None = None) -> None:
        """Call at a safe point (everything so far committed). Stops the job if the worker is stopping
        (``before_stopping`` first: an import waits there for its batch in flight to commit); else, when another
        job waits for a turn and this one has done a step with its own, lets that one go first and goes on after
        it (a batch in flight goes on meanwhile: it is this job's, and commits or fails on its own)."""
        for phase in ("before", "after"):  # the worker may be told to stop while the job waits for its turn
            if self.stopping():
                if before_stopping is not None:
                    await before_stopping()
                self.stop_if_asked()
            if phase == "before" and self.turn is not None:
                await self.turn.pass_on()

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
        """Record progress (after a committed step: a safe point, where another job may take the turn)."""
        async with self.db.write() as conn:
            if not await queue.heartbeat(conn, self.row.id, self.worker, self.now(), done, total):
                raise JobLost(f"job {self.row.public_id} was taken over by another worker")
        await self.checkpoint()


Handler = Callable[[JobContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HousekeepingContext:
    db: Database
    settings: Settings
    now: datetime
    scheduling: bool
    """True in processes started as a server (`serve`, `worker`): they run the scheduled work (exports, file
    sweeps); a worker built in a test or inside `promoflow api` does not."""
    stopping: Callable[[], bool] = lambda: False
    """True once the worker is asked to stop: a long task (the retention purge) ends at its next batch."""


Housekeeping = Callable[[HousekeepingContext], Awaitable[None]]

MAX_TICK = timedelta(seconds=30)
MIN_TICK = timedelta(milliseconds=50)
DEFAULT_HOLD = 8
"""Jobs one worker holds at most (beyond ``concurrency``, which may be larger)."""
BUSY_POLL_SECONDS = 0.5
"""How often at most a worker with every turn taken polls for jobs to hold in reserve (the default poll interval:
a shorter one, set so that an idle worker starts a file at once, would make a busy worker poll as often, each
poll a transaction of the worker's CPU and the database's, for jobs that would wait for a turn anyway)."""


def _clamp(value: timedelta) -> timedelta:
    return max(MIN_TICK, min(MAX_TICK, value))


def recovery_tick(stall_after: timedelta) -> timedelta:
    """How often a worker looks for stalled jobs: a quarter of the stall time (at most 30 s)."""
    return _clamp(stall_after / 4)


def housekeeping_tick(settings: Settings) -> timedelta:
    """How often a worker runs the features' housekeeping: a quarter of the export interval (at most 30 s)."""
    interval = settings.export_interval_seconds
    return _clamp(timedelta(seconds=interval) / 4) if interval > 0 else MAX_TICK


LOOP_BACKOFF_MAX = 10.0
"""Seconds a worker waits at most between two tries of its loop while each fails (the database down)."""

# A running job's step may take this many stall windows (`worker_stall_seconds`) before its worker stops renewing
# its heartbeat for it (`Worker._keep_held_alive`): 10 × 120 s by default.
RUNNING_STALL_FACTOR = 10


class Turns:
    """The turns of one worker: ``n`` jobs may run at once; the others wait, and get a turn in the order they
    asked for one."""

    def __init__(self, n: int) -> None:
        self.free = n
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.active_at = time.monotonic()
        """When a turn last changed hands or was passed on: the jobs holding turns are making progress."""

    def waiting(self) -> int:
        return sum(1 for f in self._waiting if not f.done())

    async def acquire(self) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            self.active_at = time.monotonic()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(fut)
            raise
        self.active_at = time.monotonic()

    def release(self) -> None:
        self.active_at = time.monotonic()
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


@dataclass
class Turn:
    """One job's use of the worker's turns. A job keeps a turn it took for at least one step (an import's batch):
    it gives it away at a later safe point, if another job waits."""

    turns: Turns
    held: bool = False
    fresh: bool = False
    """Taken, and no step done with it yet."""

    async def take(self) -> None:
        await self.turns.acquire()
        self.held = self.fresh = True

    def give(self) -> None:
        if self.held:
            self.held = False
            self.turns.release()

    def others_waiting(self) -> bool:
        return self.turns.waiting() > 0

    def should_give_way(self) -> bool:
        return self.held and not self.fresh and self.others_waiting()

    async def pass_on(self) -> None:
        """At a safe point: let a waiting job have the turn and wait for the next one — unless this job has done no
        step since it took the turn, or nobody waits."""
        self.turns.active_at = time.monotonic()
        if self.should_give_way():
            self.give()
            await self.take()
        self.fresh = False


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        settings: Settings | None = None,
        composition: Composition | None = None,
        poll_seconds: float = 0.5,
        stall_after: timedelta | None = None,
        schedule: bool = False,
        name: str | None = None,
        concurrency: int | None = None,
        hold: int | None = None,
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
        self.stall_after = stall_after or timedelta(seconds=self.settings.worker_stall_seconds)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = max(1, concurrency or self.settings.worker_concurrency)
        self.hold = max(self.concurrency, hold or DEFAULT_HOLD)
        # On PostgreSQL several workers share the queue: a busy one takes a job to hold in reserve only when no
        # idle worker took it within its poll interval. SQLite has one worker.
        self.grace = timedelta(0) if db.sqlite else timedelta(seconds=poll_seconds)
        self.recover_every = recovery_tick(self.stall_after)
        self.housekeep_every = housekeeping_tick(self.settings)
        self._turns = Turns(self.concurrency)
        self._held: dict[int, tuple[asyncio.Task[None], Turn, str | None]] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_recovery: datetime | None = None
        self._last_housekeeping: datetime | None = None
        self._started = 0
        self._finished = 0
        self.waiting = False
        """True while the worker waits for its next poll (or a wake-up) with nothing it could start."""

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for work now (an enqueue in this process)."""
        self._wake.set()

    def held_queues(self) -> list[str | None]:
        """The queues of the jobs this worker holds (one job per queue at most)."""
        return [q for _, _, q in self._held.values()]

    @property
    def idle_wait(self) -> float:
        return min(
            self.poll_seconds, self.recover_every.total_seconds(), self.housekeep_every.total_seconds()
        )

    @property
    def busy_wait(self) -> float:
        """The wait of a worker whose turns are all taken: it looks for jobs to hold in reserve no more often than
        every `BUSY_POLL_SECONDS` (each look is a transaction; a reserve job starts at a safe point of a running
        one anyway), while stall recovery and housekeeping keep their ticks."""
        return min(
            max(self.poll_seconds, BUSY_POLL_SECONDS),
            self.recover_every.total_seconds(),
            self.housekeep_every.total_seconds(),
        )

    async def run(self) -> None:
        log.info("worker.started name=%s concurrency=%d hold=%d", self.name, self.concurrency, self.hold)
        # An FTP upload in this process (`serve`) wakes the worker from the FTP server's thread.
        wakeup.register(id(self), asyncio.get_running_loop(), self.wake)
        failing = 0  # loop errors in a row (the database down): logged once in full, then a line now and then
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    await self._step()
                    if failing:
                        log.warning("worker.loop_recovered after=%d errors", failing)
                    failing = 0
                except Exception as exc:
                    failing += 1
                    if failing == 1:
                        log.exception("worker.loop_error")
                    elif failing & (failing - 1) == 0:  # the 2nd, 4th, 8th … in a row: one line, no traceback
                        log.error("worker.loop_error repeated=%d %s: %s", failing, type(exc).__name__,
                                  error_line(exc))  # fmt: skip
                self.waiting = True
                with contextlib.suppress(TimeoutError):
                    busy = len(self._held) >= self.concurrency
                    # While failing, wait longer each time (up to LOOP_BACKOFF_MAX s): no busy loop on a dead
                    # database; a wake-up still ends the wait at once.
                    pause = self.busy_wait if busy else self.idle_wait
                    if failing:
                        pause = max(pause, min(LOOP_BACKOFF_MAX, self.idle_wait * 2 ** min(failing, 10)))
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
                self.waiting = False
        finally:
            wakeup.unregister(id(self))
            await self._finish_held()
        log.info("worker.stopped name=%s", self.name)

    async def run_until_idle(self, max_jobs: int = 10_000) -> int:
        """Run jobs until none is runnable and none is in hand (for tests and one-shot CLI use); how many ran."""
        self._started = 0
        try:
            while True:
                self._wake.clear()
                finished = self._finished
                await self._step(limit=max_jobs)
                if not self._held:
                    if self._finished != finished:
                        continue  # a job ended while this step looked: its queue may have a next one now
                    return self._started
                await asyncio.wait(
                    [task for task, _, _ in self._held.values()], return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            await self._finish_held()

    async def _finish_held(self) -> None:
        """Stopping (or leaving run_until_idle on an error): the jobs in hand stop at their next safe point."""
        if self._held:
            self._stop.set()
            await asyncio.gather(*(task for task, _, _ in self._held.values()), return_exceptions=True)

    async def _step(self, limit: int | None = None) -> None:
        """Housekeeping when due, then claim what this worker may hold."""
        now = self.clock.now()
        await self._housekeeping(now)
        while len(self._held) < self.hold and not self._stop.is_set():
            if limit is not None and self._started >= limit:
                return
            # The first `concurrency` jobs: any due job. Further ones (held until a turn is free): due a poll ago.
            due = now if len(self._held) < self.concurrency else now - self.grace
            async with self.db.write() as conn:
                row = await queue.claim(conn, self.name, now, due=due)
                if row is None:
                    return
                trow = (await conn.execute(select(tenant).where(tenant.c.id == row.tenant_id))).first()
            self._started += 1
            turn = Turn(self._turns)
            task = asyncio.create_task(self._run_job(row, trow, turn), name=f"promoflow-job-{row.public_id}")
            self._held[row.id] = (task, turn, row.queue)
            task.add_done_callback(functools.partial(self._task_done, row.id))

    def _task_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._done(job_id)

    def _done(self, job_id: int) -> None:
        self._held.pop(job_id, None)
        self._finished += 1
        self._wake.set()  # a place is free (and the job's queue may have a next one)

    async def _housekeeping(self, now: datetime) -> None:
        if self._last_recovery is None or now - self._last_recovery >= self.recover_every:
            self._last_recovery = now
            async with self.db.write() as conn:
                await self._keep_held_alive(conn, now)
                recovered = await queue.recover_stalled(conn, now, self.stall_after)
            if recovered:
                log.warning("worker.recovered_stalled count=%d", recovered)
        if self._last_housekeeping is not None and now - self._last_housekeeping < self.housekeep_every:
            return
        self._last_housekeeping = now
        hk = HousekeepingContext(self.db, self.settings, now, self.schedule, self._stop.is_set)
        for task in self.composition.housekeeping:
            if self._stop.is_set():  # the rest waits for the next worker: a shutdown does not
                break
            try:
                await task(hk)
            except Exception:
                log.exception("worker.housekeeping_failed task=%s", getattr(task, "__name__", task))

    async def _keep_held_alive(self, conn: Any, now: datetime) -> None:
        """The jobs this worker holds are alive while it runs, and their heartbeats are renewed, so no worker
        (this one included) takes them for stalled:
        - a job waiting for a turn, as long as the jobs that have the turns make progress;
        - a job that has a turn, through a long step too (an import's batch of refused lines, each in a
          savepoint of its own, has taken over a minute on a loaded database), as long as some job made progress
          within `RUNNING_STALL_FACTOR` stall windows: a step stuck for longer is let go, to be taken over."""
        quiet = time.monotonic() - self._turns.active_at
        alive = [
            job_id
            for job_id, (_, turn, _) in self._held.items()
            if quiet <= self.stall_after.total_seconds() * (RUNNING_STALL_FACTOR if turn.held else 1)
        ]
        if alive:
            await conn.execute(
                update(job)
                .where(job.c.id.in_(alive), job.c.locked_by == self.name, job.c.status == "running")
                .values(heartbeat_at=now)
            )

    async def _run_job(self, row: Any, trow: Any, turn: Turn) -> None:
        ctx = JobContext(
            self.db, self.clock, row, context_from_row(trow), self.name, self.settings, self.composition,
            self._stop.is_set, turn,
        )  # fmt: skip
        fn = self.composition.jobs.get(row.kind)
        try:
            await turn.take()
            started = time.perf_counter()
            try:
                ctx.stop_if_asked()  # stopped while it waited for its first turn: back to the queue
                log.info("job.started id=%s kind=%s attempt=%d", row.public_id, row.kind, row.attempts)
                if fn is None:
                    raise PermanentJobError(f"no handler for job kind {row.kind!r}")
                result = await fn(ctx)
            except JobLost as exc:
                log.warning("job.lost id=%s kind=%s: %s", row.public_id, row.kind, exc)
                _observe(row.kind, "lost", started)
                return
            except Interrupted:
                async with self.db.write() as conn:
                    released = await queue.release(conn, row.id, self.name, self.clock.now())
                log.info("job.released id=%s kind=%s released=%s", row.public_id, row.kind, released)
                _observe(row.kind, "released", started)
                return
            except (PermanentJobError, Exception) as exc:
                permanent = isinstance(exc, PermanentJobError)
                log.warning("job.failed id=%s kind=%s permanent=%s error=%s", row.public_id, row.kind, permanent,
                            exc)  # fmt: skip
                detail = str(exc) if permanent else "".join(traceback.format_exception_only(exc)).strip()
                async with self.db.write() as conn:
                    await queue.fail(conn, row, self.name, self.clock.now(), detail, permanent=permanent)
                final = permanent or row.attempts >= row.max_attempts
                _observe(row.kind, "failed" if final else "retry", started, failed=final)
                return
            async with self.db.write() as conn:
                await queue.succeed(conn, row.id, self.name, self.clock.now(), result)
            log.info("job.succeeded id=%s kind=%s", row.public_id, row.kind)
            _observe(row.kind, "succeeded", started)
        except Exception:
            log.exception("worker.job_error id=%s kind=%s", row.public_id, row.kind)
        finally:
            turn.give()


def _observe(kind: str, outcome: str, started: float, *, failed: bool | None = None) -> None:
    """The job's duration by outcome; an attempt that raised also counts as a failure (``failed``: for good)."""
    from ..observability import metrics

    m = metrics.get()
    m.job(kind, outcome, time.perf_counter() - started)
    if failed is not None:
        m.job_failed(kind, permanent=failed)
