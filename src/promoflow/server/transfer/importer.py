"""The import job: one uploaded file, streamed, validated per record, applied in batches, exactly once.

- The file is first read for file-level faults only (not well-formed, DOCTYPE/entities, wrong root, truncated):
  such a file is rejected with its reason and changes nothing.
- Records are then applied in batches (``import_batch_size``), each batch in one transaction together with the
  verdict of each of its records (``import_record``, keyed by the record's index). A worker that dies mid-file
  leaves whole batches behind; the next run skips every index already recorded, so each record is applied once.
  If two workers ever run the same import (one was taken for dead), the verdicts' primary key fails the later
  batch, and with it that batch's effects.
- Parsing runs in a thread of its own, one batch ahead of the database, and the result file is written in
  another, one batch behind, so the event loop (the API's, in `serve`) stays responsive and the Python work
  overlaps the database round trips. On PostgreSQL, batches of an applier that declares ``marks`` (redemptions)
  also overlap each other, two at a time, committed in file order (``_Pipeline``).
- On SQLite the batches are short (``import_batch_size_sqlite``, 100): each holds the database's one write lock,
  and the process's other writers (the fast lane's redeem groups, queued on the same FIFO turn) go in between.
- A batch is also short in time (``import_batch_seconds``, 1 s; `_Pace`): records that are slow to apply (one
  savepoint each, refused redemptions that each go through the API's redeem, a database a few milliseconds
  away) make smaller batches, down to one record. A shutdown waits for the batch in flight: 1,000 such records
  took 10-20 s on a database 1-3 ms away, two of them overlapping on PostgreSQL.
- Between two batches (everything before committed) the import gives the worker's turn to another held job
  that waits for one — another tenant's file — and goes on after it (``JobContext.checkpoint``): a big file of
  one tenant never holds up the small files of the others.
- On the job's last attempt, records are applied one per transaction and a record whose application raises is
  reported ``invalid`` with the error, so a poison record cannot block the tenant's queue for ever.
- The result file is written from the stored verdicts at the end, then the file moves to processed/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...wire.xml import FileKind, FileStatus, Record, RecordError, Verdict, XmlRejected, check_file, read_file
from ..audit import Actor, record
from ..config import Settings
from ..db import Database
from ..models import file_import, import_content
from ..tenant.service import TenantContext
from ..worker import queue
from ..worker.runner import Interrupted, JobContext, JobLost
from .files import FileStore
from .inbox import forget_content
from .results import Outcome, ResultFile, done_upto, save_outcomes, verdict_counts, write_result_file

log = logging.getLogger("promoflow.transfer")

OFF_TURN_BYTES = 1 << 20
"""A file larger than this is read for its first check without the worker's turn (a smaller one is read at once)."""
FIRST_BATCH = 50
"""Records in an import's first batch when batches are paced: few enough that a file of slow records starts with
a batch of about a second; `_Pace` doubles it from there while batches stay within their time."""
SKIP_CHECK_EVERY = 1024
"""A resumed import reading past its committed records asks every this many whether the worker is stopping."""


class Applier(Protocol):
    """Applies valid records of one kind through the services; one Outcome per record, in any order."""

    async def apply(self, conn: AsyncConnection, records: list[Record[Any]]) -> list[Outcome]: ...


ApplierFactory = Callable[[TenantContext, Any, Any], Applier]  # (tenant, import row, now) → applier


Item = Record[Any] | RecordError


class _Pace:
    """How many records the next batch takes: as many as the last measured batch would have applied in
    ``seconds`` (at least one), never more than ``largest`` nor twice the current size. A batch of slow records
    shrinks the next ones at once; fast records grow them back, doubling, to ``largest``. ``seconds`` 0: always
    ``largest``. The time measured is the batch's own work in its transaction (not its wait for the write turn
    or for the previous batch's commit)."""

    def __init__(self, largest: int, seconds: float) -> None:
        self.largest, self.seconds = largest, seconds
        self.size = min(largest, FIRST_BATCH) if seconds > 0 else largest

    def record(self, records: int, elapsed: float) -> None:
        if self.seconds <= 0 or records <= 0:
            return
        fits = self.largest if elapsed <= 0 else int(records * self.seconds / elapsed)
        self.size = max(1, min(self.largest, 2 * self.size, fits))


class _Batches:
    """Pulls batches from the streaming reader on one dedicated thread (lxml parsers stay on their thread).
    ``stop_if_asked`` is called there now and then while a resumed import reads past its committed records (a
    few seconds for a million of them): a shutdown does not wait for the rest."""

    def __init__(self, kind: FileKind, path: Path, skip_upto: int, stop_if_asked: Callable[[], None]) -> None:
        self._kind, self._path, self._skip, self._stop_if_asked = kind, path, skip_upto, stop_if_asked
        self._items: Iterator[Item] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promoflow-import")

    def _next(self, size: int) -> list[Item]:
        if self._items is None:
            self._items = read_file(self._kind, self._path)
        batch: list[Item] = []
        for item in self._items:
            if item.index <= self._skip:
                if item.index % SKIP_CHECK_EVERY == 0:
                    self._stop_if_asked()
                continue
            batch.append(item)
            if len(batch) >= size:
                break
        return batch

    def next(self, size: int) -> asyncio.Future[list[Item]]:
        return asyncio.get_running_loop().run_in_executor(self._pool, self._next, size)

    def check(self) -> asyncio.Future[int]:
        return asyncio.get_running_loop().run_in_executor(self._pool, check_file, self._kind, self._path)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


async def _load(db: Database, tenant_id: uuid.UUID, import_id: uuid.UUID) -> Any:
    async with db.read() as conn:
        return (
            await conn.execute(
                select(file_import).where(
                    file_import.c.public_id == import_id, file_import.c.tenant_id == tenant_id
                )
            )
        ).first()


async def _update(db: Database, row_id: int, **values: Any) -> None:
    async with db.write() as conn:
        await conn.execute(update(file_import).where(file_import.c.id == row_id).values(**values))


def file_actor(imp: Any) -> Actor:
    """The actor of a file's changes: recorded as one ``import.apply`` entry per import, not one per line."""
    return Actor.file(imp.file_name, imp.public_id)


async def run_file_import(job: JobContext) -> dict[str, Any]:
    store = FileStore(Path(job.payload["root"]))
    imp = await _load(job.db, job.tenant.tenant_id, uuid.UUID(job.payload["importId"]))
    if imp is None:
        return {"importId": job.payload["importId"], "status": "missing"}
    last_attempt = job.row.attempts >= job.row.max_attempts
    try:
        return await _run(job, store, imp, isolate=last_attempt)
    except (asyncio.CancelledError, TakenOver, JobLost, Interrupted):
        raise
    except Exception as exc:
        if not last_attempt:
            raise
        # The job will not be retried: tell the sender, and let the same content be uploaded again.
        log.exception("transfer.import_failed import=%s", imp.public_id)
        reason = f"the import failed: {type(exc).__name__}: {exc}"[:900]
        async with job.db.read() as conn:
            applied = await done_upto(conn, imp.id)
        if applied:
            # Records 1..applied took effect (with their verdicts); the rest did not: say so, keep the hash.
            reason += f"; records after {applied} were not applied: send them again in a new file"
        status = FileStatus.PROCESSED if applied else FileStatus.REJECTED
        await _finish(job, store, imp, "failed", status, reason=reason, records=True, forget=not applied)
        return {"importId": str(imp.public_id), "status": "failed", "reason": reason}


async def _run(job: JobContext, store: FileStore, imp: Any, *, isolate: bool) -> dict[str, Any]:
    if imp.status in ("done", "failed") or (imp.status == "rejected" and imp.finished_at is not None):
        return {"importId": str(imp.public_id), "status": imp.status, "counts": imp.counts}
    if imp.status == "rejected":  # refused by name at upload
        return await _finish(job, store, imp, "rejected", FileStatus.REJECTED, reason=imp.reason)
    if imp.status == "duplicate":
        original = await _load(job.db, imp.tenant_id, imp.duplicate_of)
        if original is not None and original.status != "failed":
            return await _finish(
                job, store, imp, "duplicate", FileStatus.DUPLICATE,
                reason=f"same content as import {original.public_id} (file {original.file_name})",
                records_of=original.id,
            )  # fmt: skip
        imp = await _take_over(job.db, imp)
    path = store.resolve(imp.stored_path)
    kind = FileKind(imp.kind)
    factory = job.appliers.get(kind)
    if factory is None:
        return await _finish(job, store, imp, "rejected", FileStatus.REJECTED,
                             reason=f"{kind.value} files are not imported by this server")  # fmt: skip
    async with job.db.read() as conn:
        start = await done_upto(conn, imp.id)
    settings = job.settings
    batches = _Batches(kind, path, start, job.stop_if_asked)
    pace = _Pace(batch_size(settings, job.db), settings.import_batch_seconds)
    result = ResultFile(store, imp)
    try:
        if start == 0:
            try:
                # A thread reads the whole file: for a big one, other jobs may have the turn meanwhile.
                big = (imp.size_bytes or 0) > OFF_TURN_BYTES
                async with job.off_turn() if big else contextlib.nullcontext():
                    total = await batches.check()
            except XmlRejected as exc:
                return await _finish(job, store, imp, "rejected", FileStatus.REJECTED, reason=exc.reason,
                                     line=exc.line)  # fmt: skip
            except FileNotFoundError:
                return await _finish(job, store, imp, "failed", FileStatus.REJECTED, forget=True,
                                     reason="the uploaded file was lost before it was imported; upload it again")  # fmt: skip
            await _update(job.db, imp.id, status="running", started_at=job.now(), records_total=total)
        else:
            total = imp.records_total
            log.info("transfer.import_resumed import=%s after_record=%d", imp.public_id, start)
            # A page at a time, the worker may stop in between (the file copies the verdicts of the records done).
            await result.add_stored(job.db, imp.id, upto=start, between_pages=job.stop_if_asked)
        await _apply_all(job, imp, factory, batches, pace, total, result, isolate=isolate)
        return await _finish(job, store, imp, "done", FileStatus.PROCESSED, records=True, result=result)
    finally:
        batches.close()
        result.discard()


def batch_size(settings: Settings, db: Database) -> int:
    """Records per batch transaction. On SQLite a batch holds the one write lock every writer of the file queues
    on (the fast lane's redeem groups among them), so there batches are short slices
    (``import_batch_size_sqlite``): a checkout waits for at most one of them, never for a 1,000-line batch."""
    size = settings.import_batch_size
    if db.sqlite:
        size = min(size, settings.import_batch_size_sqlite)
    return max(1, size)


async def _take_over(db: Database, imp: Any) -> Any:
    """A duplicate of an import that failed for good is imported itself (it now owns the content hash)."""
    async with db.write() as conn:
        await conn.execute(
            import_content.delete().where(
                import_content.c.tenant_id == imp.tenant_id, import_content.c.content_hash == imp.content_hash
            )
        )
        await conn.execute(
            import_content.insert().values(
                tenant_id=imp.tenant_id, content_hash=imp.content_hash, import_id=imp.id
            )
        )
        await conn.execute(
            update(file_import).where(file_import.c.id == imp.id).values(status="queued", duplicate_of=None)
        )
    return await _load(db, imp.tenant_id, imp.public_id)


async def _apply_all(job: JobContext, imp: Any, factory: ApplierFactory, batches: _Batches, pace: _Pace,
                     total: int | None, result: ResultFile, *, isolate: bool) -> None:  # fmt: skip
    """The stages run at once: the reader thread parses batch n + 2, the database applies batch n + 1 while batch
    n finishes (its verdicts, heartbeat and commit: see _Pipeline), and the result thread writes the verdicts of
    batch n − 1. At most one batch waits for each stage, so memory stays flat. Each batch takes the size the
    pace gives when it is read (from the last batch measured by then)."""
    pending = batches.next(pace.size)
    pipeline = _Pipeline(job, imp, factory, pace, total, result, overlap=not isolate)
    try:
        while True:
            items = await pending
            if not items:
                break
            # A safe point: everything so far committed. Stop here (shutdown; resumable from here), or let another
            # job of this worker (another tenant's file) have the turn before the next batch.
            await job.checkpoint(before_stopping=pipeline.drain)
            pending = batches.next(pace.size)
            if isolate:
                outcomes = []
                began = time.perf_counter()
                for item in items:
                    outcomes += await _apply_one_isolated(job, imp, factory, item, total)
                pace.record(len(items), time.perf_counter() - began)
                await pipeline.publish(outcomes)
            else:
                await pipeline.submit(items)
        await pipeline.drain()
    finally:
        if not pending.done():
            pending.cancel()
        await pipeline.close()


class _Pipeline:
    """Up to two batch transactions at once, committed strictly in file order.

    Batch n + 1 runs its statements while batch n writes its verdicts and commits, so the database is never idle
    while the worker turns one batch's answer into verdicts. Safe because:

    - batch n + 1 commits only after batch n has (it waits for n before its heartbeat, the last statement), so
      the records committed are always a prefix of the file and a resumed import skips exactly those; if batch n
      fails, batch n + 1 fails too and nothing after n's predecessor is kept;
    - two batches overlap only when the applier says they cannot see each other: its ``marks`` (for redemptions:
      the coupons and idempotency keys of the lines) are disjoint; otherwise batch n + 1 starts after n committed;
    - only on PostgreSQL (SQLite has one writer) and only for appliers that declare ``marks``.
    """

    def __init__(self, job: JobContext, imp: Any, factory: ApplierFactory, pace: _Pace, total: int | None,
                 result: ResultFile, *, overlap: bool) -> None:  # fmt: skip
        self.job, self.imp, self.factory, self.pace = job, imp, factory, pace
        self.total, self.result = total, result
        self.marks_of: Callable[[Record[Any]], Iterable[str]] | None = getattr(factory, "marks", None)
        self.overlap = overlap and self.marks_of is not None and job.db.dialect == "postgresql"
        self.inflight: asyncio.Task[list[Outcome]] | None = None
        self.inflight_marks: set[str] = set()
        self.writing: asyncio.Future[None] | None = None
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promoflow-result")

    def _marks(self, items: list[Item]) -> set[str]:
        assert self.marks_of is not None
        return {mark for item in items if isinstance(item, Record) for mark in self.marks_of(item)}

    async def submit(self, items: list[Item]) -> None:
        marks = self._marks(items) if self.overlap else set()
        if self.inflight is not None and (not self.overlap or marks & self.inflight_marks):
            await self._settle()  # the two batches could see each other: this one starts after that one
        previous = self.inflight
        self.inflight = asyncio.ensure_future(
            _apply_batch(self.job, self.imp, self.factory, items, self.total, after=previous, pace=self.pace)
        )
        self.inflight_marks = marks
        if previous is not None:
            await self.publish(await previous)
        if not self.overlap:
            await self._settle()

    async def _settle(self) -> None:
        """Wait for the batch in flight (committed, in order) and hand its verdicts to the result thread."""
        task, self.inflight = self.inflight, None
        assert task is not None
        await self.publish(await task)

    async def publish(self, outcomes: list[Outcome]) -> None:
        """Committed verdicts: to the result thread, and counted (`promoflow_import_records_total`)."""
        count_records(self.imp.kind, outcomes)
        if self.writing is not None:
            await self.writing
        self.writing = asyncio.get_running_loop().run_in_executor(self.writer, self.result.add, outcomes)

    async def drain(self) -> None:
        if self.inflight is not None:
            await self._settle()
        if self.writing is not None:
            await self.writing

    async def close(self) -> None:
        task = self.inflight
        if task is not None:
            # Only after an error: the batch in flight has not committed (or commits a prefix of the file,
            # which is as safe); roll it back and wait, so its connection goes back to the pool clean.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.writer.shutdown(wait=True)


def count_records(kind: str, outcomes: list[Outcome]) -> None:
    from ..observability import metrics

    m = metrics.get()
    # Counted by enum member, named once per verdict: an enum's `.value` is a Python call, too many for each line.
    for member, n in Counter(o.verdict for o in outcomes).items():
        verdict = member.value
        m.import_records.labels(kind, verdict).inc(n)
        if (
            kind == "redemptions"
        ):  # also a redeem outcome, as the API's (`promoflow_redeem_total{source="file"}`)
            outcome = _REDEEM_OUTCOME.get(verdict, "refused")
            m.redeem(outcome, verdict if outcome == "refused" else "", source="file", n=n)


# A redemption line's verdict as a redeem outcome; the others (notFound, expired, invalid, …) are refusals.
_REDEEM_OUTCOME = {
    "applied": "redeemed",
    "conflictAlreadyRedeemed": "already_redeemed",
    "duplicate": "replayed",
}


def _split(items: list[Item]) -> tuple[list[Record[Any]], list[Outcome]]:
    records: list[Record[Any]] = []
    outcomes: list[Outcome] = []
    for item in items:
        if isinstance(item, RecordError):
            outcomes.append(Outcome.invalid(item))
        else:
            records.append(item)
    return records, outcomes


class TakenOver(JobLost):
    """Another worker took this job over (this one was taken for dead): stop, and keep nothing of this batch. A
    lost job to the worker (`JobLost`): no failure recorded, no attempt used, metrics outcome "lost"."""


async def _apply_batch(job: JobContext, imp: Any, factory: ApplierFactory, items: list[Item],
                       total: int | None, *, after: asyncio.Future[Any] | None = None,
                       pace: _Pace | None = None) -> list[Outcome]:  # fmt: skip
    """One transaction: the records' effects, their verdicts, and the job's heartbeat. The heartbeat only counts
    while the job is still this worker's, so a worker that was taken for dead commits nothing more. ``after``
    is the previous batch's transaction when the two overlap: this one commits only once that one has. Its
    work's time goes to ``pace``."""
    records, outcomes = _split(items)
    async with job.db.write() as conn:
        began = time.perf_counter()
        if records:
            outcomes += await factory(job.tenant.acting(file_actor(imp)), imp, job.now()).apply(conn, records)
        await save_outcomes(conn, imp.id, imp.tenant_id, outcomes)
        if pace is not None:
            pace.record(len(items), time.perf_counter() - began)
        if after is not None:
            await _wait_for_commit(after)
        if not await queue.heartbeat(conn, job.row.id, job.worker, job.now(), items[-1].index, total):
            raise TakenOver(f"import {imp.public_id} was taken over by another worker")
    return outcomes


async def _wait_for_commit(previous: asyncio.Future[Any]) -> None:
    """Until the previous batch has committed; raises (so this batch rolls back) if it failed. Shielded: this
    batch being cancelled must not cancel that one."""
    await asyncio.shield(previous)


async def _apply_one_isolated(job: JobContext, imp: Any, factory: ApplierFactory, item: Item,
                              total: int | None) -> list[Outcome]:  # fmt: skip
    try:
        return await _apply_batch(job, imp, factory, [item], total)
    except (asyncio.CancelledError, TakenOver, JobLost):
        raise
    except Exception as exc:
        log.warning("transfer.record_failed import=%s index=%d error=%r", imp.public_id, item.index, exc)
        outcome = Outcome(item.index, Verdict.INVALID, getattr(item, "line", None),
                          reason=f"could not be applied: {type(exc).__name__}: {exc}")  # fmt: skip
        async with job.db.write() as conn:
            await save_outcomes(conn, imp.id, imp.tenant_id, [outcome])
        return [outcome]


def _with_line(reason: str | None, line: int | None) -> str | None:
    """A file-level reason as the Imports list shows it, with the line the result file names: 'not well-formed
    (line 5): expected '>''."""
    if reason is None or line is None:
        return reason
    head, colon, rest = reason.partition(":")
    return f"{head} (line {line}){colon}{rest}"


async def _finish(
    job: JobContext,
    store: FileStore,
    imp: Any,
    status: str,
    file_status: FileStatus,
    *,
    reason: str | None = None,
    line: int | None = None,
    records: bool = False,
    records_of: int | None = None,
    result: ResultFile | None = None,
    forget: bool = False,
) -> dict[str, Any]:
    """Result file (atomic), file to processed/, then the import's final state: each step can be repeated."""
    if result is not None:
        result_path = result.publish(file_status, reason, line)
    else:
        result_path = await write_result_file(
            job.db, store, imp, status=file_status, reason=reason, line=line,
            records_of=imp.id if records else records_of,
        )  # fmt: skip
    if imp.stored_path:
        store.move_to_processed(store.resolve(imp.stored_path), imp.tenant_id, imp.file_name, imp.public_id)
    async with job.db.write() as conn:
        counts = await verdict_counts(conn, imp.id)
        await conn.execute(
            update(file_import)
            .where(file_import.c.id == imp.id)
            .values(
                status=status, reason=_with_line(reason, line) or imp.reason, counts=counts, result_file=result_path,
                records_total=sum(counts.values()) if records else imp.records_total or 0,
                finished_at=job.now(), started_at=func.coalesce(file_import.c.started_at, job.now()),
            )
        )  # fmt: skip
        if forget:
            await forget_content(conn, imp)
        if (
            records and status in ("done", "failed") and counts.get("applied")
        ):  # an import that changed something
            after = {"kind": imp.kind, "folder": imp.folder, "status": status,
                     "counts": {k: v for k, v in counts.items() if v},
                     **({"reason": reason} if reason else {})}  # fmt: skip
            await record(conn, imp.tenant_id, file_actor(imp), "import.apply", "import", imp.public_id,
                         after=after, at=job.now(), summary=True)  # fmt: skip
    log.info("transfer.import_finished import=%s file=%r status=%s counts=%s",
             imp.public_id, imp.file_name, status, counts)  # fmt: skip
    return {"importId": str(imp.public_id), "status": status, "counts": counts, "resultFile": result_path}
