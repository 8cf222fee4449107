"""The worker's housekeeping ticks follow the settings: a stalled job is taken over a quarter of
`worker_stall_seconds` after it stalled (not up to 30 s later), the scheduled export starts a quarter of its
interval after it is due; and its turns: a job waiting for one is kept alive, a worker holds one job per queue.
On each test's own database (a worker runs every due job it finds), on SQLite and PostgreSQL, with a frozen clock
moved by hand: no sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from promoflow.kit.clock import FrozenClock
from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.features import Feature, compose, default_composition
from promoflow.server.models import job
from promoflow.server.worker import queue
from promoflow.server.worker.runner import (
    MAX_TICK,
    JobContext,
    Worker,
    housekeeping_tick,
    recovery_tick,
)
from tests.conftest import START, make_tenant

RAN: list[str] = []


async def _noop(ctx: JobContext) -> dict[str, Any]:
    RAN.append(ctx.worker)
    return {}


COMPOSITION = compose([*default_composition().features, Feature(name="test", jobs={"test.noop": _noop})])


def test_the_ticks_are_derived_from_the_settings() -> None:
    assert recovery_tick(timedelta(seconds=120)) == MAX_TICK == timedelta(seconds=30)
    assert recovery_tick(timedelta(seconds=2)) == timedelta(milliseconds=500)
    assert housekeeping_tick(Settings(export_interval_seconds=3600)) == MAX_TICK
    assert housekeeping_tick(Settings(export_interval_seconds=8)) == timedelta(seconds=2)
    assert housekeeping_tick(Settings(export_interval_seconds=0)) == MAX_TICK


def test_a_stalled_job_is_taken_over_a_quarter_of_the_stall_time_after_it_stalled(own_db, tmp_path):
    settings = Settings(
        database_url=own_db, data_dir=tmp_path, worker_stall_seconds=2, export_interval_seconds=0
    )
    tenant = make_tenant(settings)
    clock = FrozenClock(START)
    RAN.clear()

    async def scenario() -> list[int]:
        db = Database(own_db, pool_size=2)
        try:
            async with db.write() as conn:
                await queue.enqueue(conn, uuid.UUID(tenant["tenantId"]), "test.noop", {}, clock.now())
                assert await queue.claim(conn, "dead-worker", clock.now()) is not None  # then it died
            worker = Worker(db, clock, settings=settings, composition=COMPOSITION, poll_seconds=0.05)
            ran = []
            clock.advance(timedelta(seconds=0.1))
            ran.append(await worker.run_until_idle())  # its heartbeat is fresh: it is not taken
            clock.advance(timedelta(seconds=2.5))  # stalled 0.5 s ago; this worker's last look was 2.5 s ago
            ran.append(await worker.run_until_idle())
            async with db.read() as conn:
                row = (await conn.execute(select(job.c.status, job.c.locked_by))).one()
            assert row.status == "succeeded" and row.locked_by == worker.name
            return ran
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [0, 1]
    assert len(RAN) == 1


def test_the_scheduled_export_starts_a_quarter_interval_after_it_is_due(own_db, tmp_path):
    settings = Settings(database_url=own_db, data_dir=tmp_path, export_interval_seconds=8)
    make_tenant(settings)
    clock = FrozenClock(START)

    async def scenario() -> list[int]:
        db = Database(own_db, pool_size=2)
        try:
            worker = Worker(db, clock, settings=settings, poll_seconds=0.05, schedule=True)
            first = await worker.run_until_idle()  # first sight of the tenant: its interval starts
            clock.advance(timedelta(seconds=8.5))  # due 0.5 s ago; this worker's last housekeeping 8.5 s ago
            return [first, await worker.run_until_idle()]
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [0, 1]


def test_a_worker_holds_one_job_per_queue_and_shares_its_turns(own_db, tmp_path):
    """Three jobs of one queue and one of another, one turn: the worker holds the first of the queue and the
    other queue's job (never two of one queue), and every job runs, the queue's in order."""
    settings = Settings(database_url=own_db, data_dir=tmp_path, export_interval_seconds=0)
    tenant = make_tenant(settings)
    tid = uuid.UUID(tenant["tenantId"])
    clock = FrozenClock(START)
    order: list[str] = []
    held_at_once: list[int] = []

    async def record(ctx: JobContext) -> dict[str, Any]:
        # the worker goes on claiming while the first job runs: q2's job is held too
        if ctx.payload["n"] == "q1-a":
            deadline = time.monotonic() + 20
            while len(worker.held_queues()) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling the worker's state, bounded by the deadline
        queues = worker.held_queues()
        assert len(queues) == len(set(queues)), queues
        held_at_once.append(len(queues))
        order.append(ctx.payload["n"])
        await ctx.checkpoint()  # a safe point: the other queue's job may go first
        return {}

    comp = compose([*default_composition().features, Feature(name="test", jobs={"test.record": record})])

    async def scenario() -> None:
        nonlocal worker
        db = Database(own_db, pool_size=2)
        try:
            async with db.write() as conn:
                for n in ("q1-a", "q1-b", "q1-c"):
                    await queue.enqueue(conn, tid, "test.record", {"n": n}, clock.now(), queue="q1")
                await queue.enqueue(conn, tid, "test.record", {"n": "q2-a"}, clock.now(), queue="q2")
            clock.advance(timedelta(seconds=5))  # all of them due a while: any may be held in reserve
            worker = Worker(db, clock, settings=settings, composition=comp, poll_seconds=0.05)
            assert await worker.run_until_idle() == 4
        finally:
            await db.dispose()

    worker: Worker
    asyncio.run(scenario())
    assert [n for n in order if n.startswith("q1")] == ["q1-a", "q1-b", "q1-c"]
    assert order.index("q2-a") < order.index("q1-b")  # not behind the whole of q1
    assert max(held_at_once) == 2  # q1's current job and q2's: never two of one queue


def test_a_running_job_with_a_long_step_is_kept_alive_and_not_taken_over(own_db, tmp_path):
    """A step longer than the stall time (an import batch of many refused lines on a loaded database): its
    worker renews the running job's heartbeat, so another worker's recovery finds nothing stalled."""
    settings = Settings(
        database_url=own_db, data_dir=tmp_path, worker_stall_seconds=2, export_interval_seconds=0
    )
    tenant = make_tenant(settings)
    clock = FrozenClock(START)
    ran: list[str] = []

    async def scenario() -> list[int]:
        started, finish = asyncio.Event(), asyncio.Event()

        async def long_step(ctx: JobContext) -> dict[str, Any]:
            ran.append(ctx.worker)
            started.set()
            await finish.wait()
            return {}

        composition = compose(
            [*default_composition().features, Feature(name="t", jobs={"test.long": long_step})]
        )
        db = Database(own_db, pool_size=4)
        try:
            async with db.write() as conn:
                await queue.enqueue(conn, uuid.UUID(tenant["tenantId"]), "test.long", {}, clock.now())
            holder = Worker(db, clock, settings=settings, composition=composition, poll_seconds=0.05)
            running = asyncio.create_task(holder.run_until_idle())
            recovered = []
            try:
                await asyncio.wait_for(started.wait(), 30)
                for _ in range(3):  # three stall windows pass while the step runs
                    clock.advance(timedelta(seconds=2.5))
                    await holder._housekeeping(clock.now())  # its recovery tick: it renews what it holds
                    async with db.write() as conn:  # what another worker's recovery does first
                        recovered.append(await queue.recover_stalled(conn, clock.now(), timedelta(seconds=2)))
            finally:
                finish.set()
            assert await asyncio.wait_for(running, 30) == 1
            async with db.read() as conn:
                row = (await conn.execute(select(job.c.status, job.c.attempts))).one()
            assert (row.status, row.attempts) == ("succeeded", 1)
            return recovered
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == [0, 0, 0]
    assert len(ran) == 1


def test_a_worker_whose_database_is_down_logs_one_traceback_and_backs_off(caplog, tmp_path):
    """Connections refused on every poll: the first error is logged with its traceback, the next ones as one line
    each (the 2nd, 4th, 8th … in a row), and the worker waits longer between tries, so a database outage does
    not fill the disk with tracebacks twice a second."""
    import logging

    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/down", data_dir=tmp_path)

    async def scenario() -> None:
        db = Database(settings.database_url or "", pool_size=1)
        worker = Worker(db, FrozenClock(START), settings=settings, poll_seconds=0.25)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.run(), 4)  # tries at 0, 0.5, 1.5, 3.5 s: four errors in a row
        finally:
            await db.dispose()

    with caplog.at_level(logging.INFO, logger="promoflow.worker"):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.getMessage().startswith("worker.loop_error")]
    assert len(errors) >= 2, [r.getMessage() for r in caplog.records]
    assert errors[0].exc_info is not None and all(r.exc_info is None for r in errors[1:])
    assert "repeated=2" in errors[1].getMessage() and "OperationalError" in errors[1].getMessage()
    assert len(errors) <= 4  # (at the old fixed 0.25 s: 16 tracebacks in 4 s)
