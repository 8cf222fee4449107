"""A worker asked to stop in the middle of an import stops at the next safe point, and a stop waits for little:
at most the batches in flight commit after the request, and those are short — records that are slow to apply
make batches of fewer records (`importer._Pace`, ``import_batch_seconds``), so a stop never waits for 1,000 slow
records (10-20 s on a database 1-3 ms away). A worker stopped while it resumes an import (reading past the
committed records, copying their verdicts into the result file) stops there, before any batch. Whatever the
moment, the job goes back to the queue and the next worker applies every line exactly once.

A real worker in this process on each test's own database (SQLite file and PostgreSQL), a real file uploaded
over the real FTP server. The stop is asked for from inside the import at a chosen point (after a batch has
committed, or as a resume begins), so what is asserted is structural, never a duration; no sleeps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from promoflow.kit.clock import SystemClock
from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.models import import_record, job
from promoflow.server.transfer import importer, results
from promoflow.server.transfer.ftp import FtpServer
from promoflow.server.transfer.importer import FIRST_BATCH, _Pace
from promoflow.server.worker.runner import Worker
from tests.conftest import make_tenant
from tests.server.transfer.test_processes import (
    assert_applied_once,
    assert_complete_result,
    redemption_file,
    result_path,
    seed_coupons,
    upload,
)
from tests.support.db import read_engine

NAME = "20260310120000_1_redemptions.xml"
WAIT = 120  # seconds: only reached when the behaviour under test is missing (the test then fails, not hangs)


def test_the_pace_gives_a_batch_what_fits_in_its_time() -> None:
    pace = _Pace(largest=1000, seconds=1.0)
    assert pace.size == FIRST_BATCH
    pace.record(FIRST_BATCH, 0.01)  # fast records: at most twice the size
    assert pace.size == 2 * FIRST_BATCH
    for _ in range(10):
        pace.record(pace.size, 0.01)
    assert pace.size == 1000  # never above the batch size
    pace.record(1000, 20.0)  # 20 ms a record: 50 fit in a second, at once
    assert pace.size == 50
    pace.record(50, 100.0)  # slower than a second each: one record a batch, never none
    assert pace.size == 1
    pace.record(1, 0.0)  # too fast to measure: grows again, doubling
    assert pace.size == 2
    fixed = _Pace(largest=1000, seconds=0)  # 0: the batch size, whatever the time
    fixed.record(1000, 100.0)
    assert fixed.size == 1000
    assert _Pace(largest=20, seconds=1.0).size == 20


@dataclass
class Batches:
    """The import's batches as the real `_apply_batch` runs them: (first record's index, records)."""

    started: list[tuple[int, int]] = field(default_factory=list)
    in_flight: set[tuple[int, int]] = field(default_factory=set)
    committed: list[tuple[int, int]] = field(default_factory=list)
    at_stop: set[tuple[int, int]] | None = None
    """The batches in flight when the stop was asked for."""
    started_before_stop = 0
    committed_before_stop = 0


def _watch_batches(monkeypatch: pytest.MonkeyPatch, seen: Batches, stop_after: int | None, stop: Any) -> None:
    """Record every batch; once ``stop_after`` batches have committed, ask the worker to stop (``stop()``)."""
    real = importer._apply_batch

    async def apply_batch(job_, imp, factory, items, total, **kw):  # type: ignore[no-untyped-def]
        me = (items[0].index, len(items))
        seen.started.append(me)
        seen.in_flight.add(me)
        try:
            outcomes = await real(job_, imp, factory, items, total, **kw)
        finally:
            seen.in_flight.discard(me)
        seen.committed.append(me)
        if stop_after is not None and len(seen.committed) == stop_after:
            seen.at_stop = set(seen.in_flight)
            seen.started_before_stop, seen.committed_before_stop = len(seen.started), len(seen.committed)
            stop()
        return outcomes

    monkeypatch.setattr(importer, "_apply_batch", apply_batch)


async def _run_until_stopped(worker: Worker, db: Database) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), WAIT)
    finally:
        worker.stop()
        await task
        await db.dispose()


def _job_row(url: str) -> Any:
    engine = read_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(job.c.status, job.c.attempts, job.c.locked_by, job.c.progress_done).where(
                    job.c.kind == "file_import"
                )
            ).one()
            verdicts = conn.scalar(select(func.count()).select_from(import_record))
        return row, verdicts
    finally:
        engine.dispose()


def _upload_file(settings: Settings, n: int) -> tuple[dict[str, Any], list[str]]:
    tenant = make_tenant(settings)
    coupons = seed_coupons(settings.resolved_database_url(), tenant, n)
    server = FtpServer(settings.model_copy(update={"ftp_port": 0, "ftp_host": "127.0.0.1"})).start()
    try:
        assert upload(server.address[1], tenant, NAME, redemption_file(coupons)).startswith("226")
    finally:
        server.stop()
    return tenant, coupons


def _finish_with_a_new_worker(settings: Settings) -> None:
    async def run() -> int:
        db = Database(settings.resolved_database_url(), pool_size=4)
        try:
            worker = Worker(db, SystemClock(), settings=settings, poll_seconds=0.05)
            return await worker.run_until_idle()
        finally:
            await db.dispose()

    assert asyncio.run(run()) == 1


def test_a_stop_mid_file_commits_only_the_short_batches_in_flight_and_the_next_worker_applies_each_line_once(
    own_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records slower than their time (a budget no record meets: every batch once measured takes one record) in
    batches of at most 20: the worker is asked to stop right after its 5th batch committed. Only the batches in
    flight at that moment commit after it (on PostgreSQL a redemption file's next batch overlaps; on SQLite none),
    each of one record — where 20-record batches would have gone on — and no batch starts after it."""
    n = 200
    settings = Settings(database_url=own_db, data_dir=tmp_path / "data", export_interval_seconds=0,
                        import_batch_size=20, worker_poll_seconds=0.05)  # fmt: skip
    tenant, coupons = _upload_file(settings, n)
    seen = Batches()

    async def first_worker() -> None:
        db = Database(own_db, pool_size=4)
        paced = settings.model_copy(update={"import_batch_seconds": 1e-9})
        worker = Worker(db, SystemClock(), settings=paced, poll_seconds=0.05)
        _watch_batches(monkeypatch, seen, 5, worker.stop)
        await _run_until_stopped(worker, db)

    asyncio.run(first_worker())
    monkeypatch.undo()
    assert seen.at_stop is not None, seen
    after_stop = seen.committed[seen.committed_before_stop :]
    assert set(after_stop) <= seen.at_stop, seen  # only batches already in flight committed after the stop …
    assert seen.started[seen.started_before_stop :] == [], seen  # … and none started
    assert len(seen.at_stop) <= 1  # on PostgreSQL the next batch overlaps the one committing; never more
    # Paced: a batch's size is set when it is read, one or two batches ahead (two when a redemption file's
    # batches overlap, on PostgreSQL): the first three may be read before any batch was measured, every later
    # one has one record.
    sizes = [size for _, size in seen.started]
    assert sizes[:2] == [20, 20] and set(sizes[3:]) == {1}, sizes
    # The job is back in the queue, due, its attempt not counted; the verdicts are exactly those committed.
    row, verdicts = _job_row(own_db)
    done = sum(size for _, size in seen.committed)
    assert (row.status, row.attempts, row.locked_by) == ("queued", 0, None)
    assert row.progress_done == done == verdicts and 0 < done < n
    _finish_with_a_new_worker(settings)
    assert _job_row(own_db)[0].status == "succeeded"
    assert_applied_once(own_db, coupons)
    assert_complete_result(result_path(settings.data_dir, tenant, NAME), n)


@pytest.mark.parametrize("where", ["copying the verdicts", "reading past the committed records"])
def test_a_worker_stopped_while_it_resumes_an_import_stops_there_before_any_batch(
    where: str, own_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed import first copies the verdicts of the records done into its result file, a page at a time,
    then reads the file past those records (together seconds for a long file, and a shutdown waited for all of
    it); a stop asked for meanwhile is seen after the page being copied, or at the record being read past: no
    batch runs, the job is back in the queue, and the next worker finishes the file."""
    n = 120
    settings = Settings(database_url=own_db, data_dir=tmp_path / "data", export_interval_seconds=0,
                        import_batch_size=20, worker_poll_seconds=0.05)  # fmt: skip
    tenant, coupons = _upload_file(settings, n)
    copied: list[int] = []  # verdicts copied into the result file after the stop was asked for
    read: list[int] = []  # records read from the file after it

    async def worker(stop_after: int | None, seen: Batches) -> None:
        db = Database(own_db, pool_size=4)
        w = Worker(db, SystemClock(), settings=settings, poll_seconds=0.05)
        asked: list[bool] = []

        def stop() -> None:
            asked.append(True)
            w.stop()

        _watch_batches(monkeypatch, seen, stop_after, stop)
        if stop_after is None:  # stop as the resume begins
            real_add_stored, real_values, real_read = (
                results.ResultFile.add_stored,
                results._values,
                importer.read_file,
            )

            async def add_stored(self, *args, **kw):  # type: ignore[no-untyped-def]
                if where == "copying the verdicts":
                    stop()
                await real_add_stored(self, *args, **kw)
                stop()  # the verdicts copied: the stop is seen while reading past the records done

            def values(index, *args):  # type: ignore[no-untyped-def]
                if asked:
                    copied.append(index)
                return real_values(index, *args)

            def read_file(kind, path):  # type: ignore[no-untyped-def]
                for item in real_read(kind, path):
                    if asked:
                        read.append(item.index)
                    yield item

            monkeypatch.setattr(results.ResultFile, "add_stored", add_stored)
            monkeypatch.setattr(results, "_values", values)
            monkeypatch.setattr(importer, "read_file", read_file)
            monkeypatch.setattr(results, "PAGE", 2)  # many pages of verdicts
            monkeypatch.setattr(importer, "SKIP_CHECK_EVERY", 1)  # asked at every record read past
        await _run_until_stopped(w, db)
        monkeypatch.undo()

    first = Batches()
    asyncio.run(worker(3, first))  # three batches committed, then a stop
    done = sum(size for _, size in first.committed)
    assert _job_row(own_db)[0].progress_done == done > 2 * 2
    resumed = Batches()
    asyncio.run(worker(None, resumed))
    if where == "copying the verdicts":
        assert len(copied) == 2 and read == [], (copied, read)  # one page (of 2) of the verdicts, no more
    else:
        assert len(copied) == 0 and read == [1], (copied, read)  # the first record read past, no more
    assert resumed.started == [], resumed  # no batch
    row, verdicts = _job_row(own_db)
    assert (row.status, row.attempts, row.locked_by, row.progress_done) == ("queued", 0, None, done)
    assert verdicts == done
    _finish_with_a_new_worker(settings)
    assert_applied_once(own_db, coupons)
    assert_complete_result(result_path(settings.data_dir, tenant, NAME), n)
