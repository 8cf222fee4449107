"""Retention purges, each in bounded batches (one short transaction per batch, so a purge never holds a long
lock on a table the API or an import is writing), each cheap when there is nothing to delete.

- Idempotency keys: deleted once expired (``PROMOFLOW_IDEMPOTENCY_TTL_HOURS``; A9 keeps them at least 24 h).
- Per-record import verdicts (``import_record``) of imports finished more than
  ``PROMOFLOW_RETENTION_IMPORT_RECORDS_DAYS`` ago. The import itself stays: its status, counts and result file.
  Imports are visited oldest first (the table's key begins with the import id), and the walk ends at the first
  import received after the cutoff: no import received later can have finished before it.
- 'Shown' events (``promotion_view``) older than ``PROMOFLOW_RETENTION_PROMOTION_VIEWS_DAYS``, oldest first by id
  (rows are written in time order). The ledger of an assignment then starts its 'shown' events at the cutoff;
  the promotion reports do not read this table (they count ``assignment_shown``, one row per assignment, kept).
- Finished jobs (``job`` rows succeeded or failed, with their payload and result: a bulk run's lines) that
  finished more than ``PROMOFLOW_RETENTION_JOBS_DAYS`` ago, oldest first by id; an import that named one forgets
  it (``file_import.job_id``; only a queued or running import reads its job). Queued and running jobs stay.
- Processed upload files (a tenant's ``integration/processed``) whose modification time — when the upload
  completed — is older than the tenant's ``processedFileRetentionDays`` or ``PROMOFLOW_RETENTION_PROCESSED_FILES_DAYS``.
  File times are the operating system's, so they are compared with its clock; rows with the server's clock.
- Result files (a tenant's ``integration/importResults``) older than ``PROMOFLOW_RETENTION_IMPORT_RESULTS_DAYS``,
  by the same file-time rule (the integrator normally deletes them once read). The import keeps its status and
  counts; its ``resultFile`` then names a file that is gone.

0 days keeps forever. Server-wide settings only, except processed files, which live in the tenant's own FTP
tree (a tenant may keep them longer as its archive; keeping database rows longer for one tenant would make every
purge walk that tenant's rows again on every run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from ...wire.xml import IMPORT_RESULTS_DIR, PROCESSED_DIR
from ..config import Settings
from ..db import Database
from ..http import idempotency
from ..models import file_import, import_record, job, tenant
from ..models.receipts import promotion_view
from ..transfer.files import FileStore

log = logging.getLogger("promoflow.retention")

DAY = 86400.0
_UNFINISHED = ("queued", "running")


@dataclass
class RetentionReport:
    idempotency_keys: int = 0
    import_records: int = 0
    promotion_views: int = 0
    jobs: int = 0
    processed_files: int = 0
    import_results: int = 0
    complete: bool = True
    """False when the run stopped at its time budget with more to delete (the next run goes on)."""
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.idempotency_keys + self.import_records + self.promotion_views + self.jobs + self.processed_files
            + self.import_results
        )  # fmt: skip


class _Budget:
    def __init__(self, seconds: float | None, stopping: Callable[[], bool] | None = None) -> None:
        self.until = None if seconds is None else time.monotonic() + seconds
        self.stopping = stopping or (lambda: False)

    def spent(self) -> bool:
        """The time is up, or the process is stopping (a shutdown does not wait for the rest of a purge)."""
        return self.stopping() or (self.until is not None and time.monotonic() >= self.until)


async def _pause() -> None:
    # Between batches: let the API's and the worker's own transactions in (on SQLite they queue on one lock).
    await asyncio.sleep(0)


async def purge_idempotency_keys(
    db: Database, now: datetime, batch: int, budget: _Budget
) -> tuple[int, bool]:
    total = 0
    while True:
        async with db.write() as conn:
            n = await idempotency.purge_expired(conn, now, limit=batch)
        total += n
        if n < batch:
            return total, True
        if budget.spent():
            return total, False
        await _pause()


async def purge_import_records(
    db: Database, now: datetime, days: int, batch: int, budget: _Budget
) -> tuple[int, bool]:
    if days <= 0:
        return 0, True
    cutoff = now - timedelta(days=days)
    total = 0
    after = -1
    while True:
        async with db.read() as conn:
            import_id = await conn.scalar(
                select(import_record.c.import_id)
                .where(import_record.c.import_id > after)
                .order_by(import_record.c.import_id)
                .limit(1)
            )
            if import_id is None:
                return total, True
            imp = (
                await conn.execute(
                    select(file_import.c.status, file_import.c.finished_at, file_import.c.received_at).where(
                        file_import.c.id == import_id
                    )
                )
            ).first()
        if imp is not None and imp.status not in _UNFINISHED and imp.finished_at is not None:
            due = imp.finished_at < cutoff
        else:
            due = imp is None  # verdicts of an import that no longer exists
        if not due:
            if imp is not None and imp.received_at >= cutoff:
                return total, True
            after = import_id  # still running, or finished recently: keep, look further
            continue
        while True:
            async with db.write() as conn:
                first = (
                    select(import_record.c.record_index)
                    .where(import_record.c.import_id == import_id)
                    .order_by(import_record.c.record_index)
                    .limit(batch)
                )
                result = await conn.execute(
                    delete(import_record).where(
                        import_record.c.import_id == import_id, import_record.c.record_index.in_(first)
                    )
                )
            n = int(result.rowcount or 0)
            total += n
            if budget.spent():
                return total, False
            await _pause()
            if n < batch:
                break


async def purge_promotion_views(
    db: Database, now: datetime, days: int, batch: int, budget: _Budget
) -> tuple[int, bool]:
    if days <= 0:
        return 0, True
    cutoff = now - timedelta(days=days)
    total = 0
    while True:
        async with db.read() as conn:
            oldest = (
                await conn.execute(
                    select(promotion_view.c.id, promotion_view.c.at)
                    .order_by(promotion_view.c.id)
                    .limit(batch)
                )
            ).all()
        old = [r.id for r in oldest if r.at < cutoff]
        if not old:
            return total, True
        async with db.write() as conn:
            result = await conn.execute(
                delete(promotion_view).where(promotion_view.c.id <= max(old), promotion_view.c.at < cutoff)
            )
        total += int(result.rowcount or 0)
        if len(old) < len(oldest) or len(oldest) < batch:
            return total, True  # reached rows inside the window
        if budget.spent():
            return total, False
        await _pause()


async def purge_jobs(db: Database, now: datetime, days: int, batch: int, budget: _Budget) -> tuple[int, bool]:
    if days <= 0:
        return 0, True
    cutoff = now - timedelta(days=days)
    total = 0
    while True:
        async with db.write() as conn:
            ids = list(
                await conn.scalars(
                    select(job.c.id)
                    .where(job.c.status.in_(("succeeded", "failed")), job.c.finished_at < cutoff)
                    .order_by(job.c.id)
                    .limit(batch)
                )
            )
            if ids:
                # No foreign key on purpose (an import outlives its job); a forgotten id can never point at a
                # later job that reuses it (SQLite may reuse the highest id).
                await conn.execute(
                    update(file_import).where(file_import.c.job_id.in_(ids)).values(job_id=None)
                )
                await conn.execute(delete(job).where(job.c.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            return total, True
        if budget.spent():
            return total, False
        await _pause()


def purge_files(store: FileStore, ftp_dir: str, tenants: list[tuple[uuid.UUID, int]], wall_now: float) -> int:
    """Delete old files of one folder of each tenant's tree (``tenants``: id and days to keep, 0 = forever).
    Only regular files directly in the folder; links are never followed."""
    removed = 0
    for tenant_id, days in tenants:
        if days <= 0:
            continue
        folder = store.folder(tenant_id, ftp_dir)
        limit = wall_now - days * DAY
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if (
                    entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < limit
                ):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # removed by the tenant or another worker meanwhile
                continue
    return removed


async def _processed_file_days(db: Database, settings: Settings) -> list[tuple[uuid.UUID, int]]:
    async with db.read() as conn:
        rows = (await conn.execute(select(tenant.c.id, tenant.c.settings))).all()
    out = []
    for row in rows:
        own: Any = (row.settings or {}).get("processedFileRetentionDays")
        out.append((row.id, int(own) if own is not None else settings.retention_processed_files_days))
    return out


async def run_retention(
    db: Database,
    settings: Settings,
    now: datetime,
    *,
    wall_now: float | None = None,
    budget_seconds: float | None = None,
    stopping: Callable[[], bool] | None = None,
) -> RetentionReport:
    """Every purge once (until done, or until ``budget_seconds`` have passed); none after ``stopping`` says so (a
    purge under way ends after its batch)."""
    report = RetentionReport()
    budget = _Budget(budget_seconds, stopping)
    batch = max(1, settings.retention_batch_size)
    steps: tuple[tuple[str, Callable[[], Awaitable[tuple[int, bool]]]], ...] = (
        ("idempotency_keys", lambda: purge_idempotency_keys(db, now, batch, budget)),
        ("import_records", lambda: purge_import_records(db, now, settings.retention_import_records_days, batch, budget)),
        ("promotion_views",
         lambda: purge_promotion_views(db, now, settings.retention_promotion_views_days, batch, budget)),
        ("jobs", lambda: purge_jobs(db, now, settings.retention_jobs_days, batch, budget)),
    )  # fmt: skip
    for name, step in steps:
        if budget.stopping():
            report.complete = False
            return report
        try:
            n, done = await step()
        except Exception as exc:  # one failing purge must not stop the others
            log.exception("retention.failed step=%s", name)
            report.errors.append(f"{name}: {exc}")
            report.complete = False
            continue
        setattr(report, name, n)
        report.complete = report.complete and done
    try:
        tenants = await _processed_file_days(db, settings)
    except Exception as exc:
        log.exception("retention.failed step=tenants")
        report.errors.append(f"tenants: {exc}")
        report.complete = False
        return report
    if budget.stopping():
        report.complete = False
        return report
    store = FileStore(settings.data_dir)
    wall = time.time() if wall_now is None else wall_now
    folders = (
        ("processed_files", PROCESSED_DIR, tenants),
        (
            "import_results",
            IMPORT_RESULTS_DIR,
            [(t, settings.retention_import_results_days) for t, _ in tenants],
        ),
    )
    for name, ftp_dir, days in folders:
        try:
            setattr(report, name, await asyncio.to_thread(purge_files, store, ftp_dir, days, wall))
        except Exception as exc:
            log.exception("retention.failed step=%s", name)
            report.errors.append(f"{name}: {exc}")
            report.complete = False
    return report


# --------------------------------------------------------------------------------------------- schedule

RUN_BUDGET_SECONDS = 5.0
"""A run stops after about this long (between batches) and the next housekeeping pass goes on: a large backlog
is purged over several passes without holding the worker's jobs back for minutes."""


def _stamp_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "retention.last"


def last_run(settings: Settings) -> datetime | None:
    try:
        return datetime.fromisoformat(_stamp_path(settings).read_text().strip())
    except (OSError, ValueError):
        return None


def _mark_run(settings: Settings, now: datetime) -> None:
    path = _stamp_path(settings)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(now.isoformat())
        tmp.replace(path)
    except OSError:
        log.warning("retention.stamp_failed path=%s", path, exc_info=True)


async def retention_housekeeping(hk: Any) -> None:
    """Housekeeping (server processes only: `serve`, `promoflow worker`): run the purges every
    PROMOFLOW_RETENTION_INTERVAL_SECONDS — or at the next pass when the last run stopped at its time budget."""
    settings: Settings = hk.settings
    if not hk.scheduling or settings.retention_interval_seconds <= 0:
        return
    last = last_run(settings)
    if (
        last is not None
        and last.tzinfo is not None
        and hk.now - last < timedelta(seconds=settings.retention_interval_seconds)
    ):
        return
    report = await run_retention(
        hk.db, settings, hk.now, budget_seconds=RUN_BUDGET_SECONDS, stopping=hk.stopping
    )
    if report.total:
        log.info(
            "retention.purged idempotency_keys=%d import_records=%d promotion_views=%d jobs=%d processed_files=%d "
            "import_results=%d complete=%s",
            report.idempotency_keys, report.import_records, report.promotion_views, report.jobs,
            report.processed_files, report.import_results, report.complete,
        )  # fmt: skip
    if report.complete:
        _mark_run(settings, hk.now)
