"""The promotion export (A14): assignments assigned, redeemed and deleted since the last export, as files in the
tenant's ``/integration/promotionExport``, on a schedule and on demand.

Never the same change twice, none missed, across crashes and restarts:

- A change is found by the time it was recorded (the assignment's ``created_at``, the redemption row's
  ``created_at``, the assignment's ``deleted_at``). Each run exports the changes recorded since the tenant's
  cursor *minus an overlap window* (a transaction can commit a while after the time it recorded), skipping the
  ones in the export ledger; the changes it exports that fall inside the next run's overlap go into the ledger.
- The file is written (fsync'd) to a temporary name first; then one transaction records the export file
  (``pending``), the ledger rows and the advanced cursor; then the file is renamed into the tenant's folder and
  marked ``published``. A crash before the commit leaves nothing (the next run exports the same changes again); a
  crash after it leaves a pending row whose file the next run publishes.
- Runs of one tenant are serialised by a lock on its cursor row (PostgreSQL) or the database lock (SQLite).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...wire.engage import ChannelType, ValueType
from ...wire.xml import (
    PROMOTION_EXPORT_DIR,
    ExportChange,
    ExportChannel,
    ExportedPromotion,
    FileKind,
    PromotionExportWriter,
    StoreType,
    file_name,
)
from ..db import Database
from ..dialect import insert_ignore
from ..models import (
    assignment,
    contact,
    export_cursor,
    export_file,
    export_ledger,
    promotion,
    redemption,
    tenant,
)
from ..tenant.errors import TenantNotFoundError
from ..tenant.service import TenantContext, context_from_row
from ..worker import queue
from ..worker.runner import HousekeepingContext, JobContext
from .files import FileStore

log = logging.getLogger("promoflow.transfer")

PROMOTION_EXPORT_JOB = "promotion_export"
PAGE = 1000
_STORE_TYPE = {"POS": StoreType.RETAIL, "ECOM": StoreType.ECOM}

_COLUMNS = (
    assignment.c.id,
    assignment.c.promotion_id,
    assignment.c.contact_id,
    assignment.c.valid_from,
    assignment.c.valid_to,
    assignment.c.created_at,
    assignment.c.deleted_at,
    assignment.c.external_code_id,
    promotion.c.external_id,
    promotion.c.name,
    promotion.c.heading,
    promotion.c.description,
    promotion.c.channels,
    contact.c.key_value,
    contact.c.contact_type,
)


def _base() -> Any:
    return assignment.join(promotion, promotion.c.id == assignment.c.promotion_id).join(
        contact, contact.c.id == assignment.c.contact_id
    )


def _not_exported(tenant_id: uuid.UUID, kind: str, assignment_id: Any, seq: Any) -> Any:
    return ~exists().where(
        export_ledger.c.tenant_id == tenant_id,
        export_ledger.c.kind == kind,
        export_ledger.c.assignment_id == assignment_id,
        export_ledger.c.seq == seq,
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _channels(channels: list[dict[str, Any]]) -> list[ExportChannel] | None:
    out = [
        ExportChannel(
            type=ChannelType(ch["type"]),
            value_type=ValueType(ch["valueType"]),
            value=_text(ch.get("value")),
            instruction=_text(ch.get("instruction")),
        )
        for ch in channels or []
    ]
    return out or None


def _exported(row: Any, change: ExportChange, ctx: TenantContext, red: Any = None) -> ExportedPromotion:
    values: dict[str, Any] = {
        "change": change,
        "contact_id": str(row.contact_id),
        "contact_key": _text(row.key_value),
        "contact_type": _text(row.contact_type),
        "coupon_id": str(row.id),
        "promotion_id": str(row.promotion_id),
        "external_promotion_id": _text(row.external_id),
        "external_promotion_code_id": _text(row.external_code_id),
        "name": _text(row.name),
        "heading": _text(row.heading),
        "description": _text(row.description),
        "valid_from_date": row.valid_from.astimezone(ctx.tz),
        "expire_date_time": row.valid_to.astimezone(ctx.tz) if row.valid_to else None,
        "currency": ctx.currency,
        "redemption_channels": _channels(row.channels),
        "assigned_date_time": row.created_at.astimezone(ctx.tz),
    }
    if red is not None:
        values.update(
            redeemed_date_time=red.redeemed_at.astimezone(ctx.tz),
            redeemed_channel=ChannelType(red.channel),
            store_id=_text(red.store_external_id),
            store_type=_STORE_TYPE.get(red.channel),
            unique_receipt_id=_text(red.unique_receipt_id),
        )
    if change is ExportChange.DELETED and row.deleted_at is not None:
        values["deleted_date_time"] = row.deleted_at.astimezone(ctx.tz)
    return ExportedPromotion(**values)


async def _changes(conn: AsyncConnection, ctx: TenantContext, since: datetime | None) -> AsyncIterator[
        tuple[ExportedPromotion, str, uuid.UUID, int, datetime]]:  # fmt: skip
    """Every change recorded since ``since`` that is not in the ledger, page by page (constant memory)."""
    t = ctx.tenant_id
    for kind, change, at_col in (("a", ExportChange.ASSIGNED, assignment.c.created_at),
                                 ("d", ExportChange.DELETED, assignment.c.deleted_at)):  # fmt: skip
        conds = [assignment.c.tenant_id == t, at_col.is_not(None), _not_exported(t, kind, assignment.c.id, 0)]
        if since is not None:
            conds.append(at_col >= since)
        last: tuple[Any, ...] | None = None
        while True:
            page_conds = list(conds)
            if last is not None:
                page_conds.append(
                    tuple_(at_col, assignment.c.id) > tuple_(literal(last[0]), literal(last[1]))
                )
            rows = (
                await conn.execute(
                    select(*_COLUMNS).select_from(_base()).where(and_(*page_conds))
                    .order_by(at_col, assignment.c.id).limit(PAGE)
                )
            ).all()  # fmt: skip
            for row in rows:
                at = row.created_at if kind == "a" else row.deleted_at
                yield _exported(row, change, ctx), kind, row.id, 0, at
            if len(rows) < PAGE:
                break
            last = (rows[-1].created_at if kind == "a" else rows[-1].deleted_at, rows[-1].id)
    red_cols = (redemption.c.seq, redemption.c.redeemed_at, redemption.c.channel, redemption.c.store_external_id,
                redemption.c.unique_receipt_id, redemption.c.created_at.label("recorded_at"))  # fmt: skip
    conds = [redemption.c.tenant_id == t, _not_exported(t, "r", redemption.c.assignment_id, redemption.c.seq)]
    if since is not None:
        conds.append(redemption.c.created_at >= since)
    key = (redemption.c.created_at, redemption.c.assignment_id, redemption.c.seq)
    last = None
    while True:
        page_conds = list(conds)
        if last is not None:
            page_conds.append(tuple_(*key) > tuple_(*(literal(v) for v in last)))
        rows = (
            await conn.execute(
                select(*_COLUMNS, *red_cols)
                .select_from(_base().join(redemption, redemption.c.assignment_id == assignment.c.id))
                .where(and_(*page_conds)).order_by(*key).limit(PAGE)
            )
        ).all()  # fmt: skip
        for row in rows:
            yield _exported(row, ExportChange.REDEEMED, ctx, row), "r", row.id, row.seq, row.recorded_at
        if len(rows) < PAGE:
            break
        last = (rows[-1].recorded_at, rows[-1].id, rows[-1].seq)


async def _lock_cursor(conn: AsyncConnection, tenant_id: uuid.UUID) -> Any:
    await conn.execute(insert_ignore(conn, export_cursor, {"tenant_id": tenant_id, "seq": 0}))
    q = select(export_cursor).where(export_cursor.c.tenant_id == tenant_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return (await conn.execute(q)).first()


def _tmp_path(store: FileStore, tenant_id: uuid.UUID, seq: int) -> Path:
    return store.tmp_dir() / f"export-{tenant_id}-{seq}.xml"


async def publish_pending(db: Database, store: FileStore, tenant_id: uuid.UUID, now: datetime) -> int:
    """Finish exports whose transaction committed but whose file was not renamed into place yet."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(export_file).where(
                    export_file.c.tenant_id == tenant_id, export_file.c.status == "pending"
                )
            )
        ).all()
    for row in rows:
        dest = store.folder(tenant_id, PROMOTION_EXPORT_DIR) / row.file_name
        tmp = _tmp_path(store, tenant_id, row.seq)
        if tmp.exists():
            store.publish(tmp, dest)
        elif not dest.exists():
            log.error("transfer.export_file_lost tenant=%s file=%s", tenant_id, row.file_name)
        async with db.write() as conn:
            await conn.execute(
                update(export_file)
                .where(export_file.c.id == row.id)
                .values(status="published", published_at=now)
            )
    return len(rows)


async def export_promotions(
    db: Database, store: FileStore, ctx: TenantContext, now: datetime, *, overlap: timedelta
) -> dict[str, Any] | None:
    """One export run for one tenant: the file written (name, counts), or None when nothing changed."""
    await publish_pending(db, store, ctx.tenant_id, now)
    store.ensure_tree(ctx.tenant_id)
    async with db.write() as conn:
        cursor = await _lock_cursor(conn, ctx.tenant_id)
        since = cursor.cursor_at - overlap if cursor.cursor_at is not None else None
        seq = cursor.seq + 1
        keep_from = now - overlap
        tmp = _tmp_path(store, ctx.tenant_id, seq)
        counts = {change.value: 0 for change in ExportChange}
        with open(tmp, "wb") as out:
            writer = PromotionExportWriter(out, export_id=f"{ctx.tenant_id}:{seq}", created_on=now.astimezone(ctx.tz),
                                           from_date_time=since.astimezone(ctx.tz) if since else None,
                                           to_date_time=now.astimezone(ctx.tz))  # fmt: skip
            writer.open()
            ledger: list[dict[str, Any]] = []
            async for item, kind, assignment_id, rseq, at in _changes(conn, ctx, since):
                writer.write(item)
                counts[item.change.value] += 1
                if at >= keep_from:
                    ledger.append({"tenant_id": ctx.tenant_id, "kind": kind, "assignment_id": assignment_id,
                                   "seq": rseq, "at": at})  # fmt: skip
                if len(ledger) >= PAGE:
                    await conn.execute(insert(export_ledger), ledger)
                    ledger = []
            if ledger:
                await conn.execute(insert(export_ledger), ledger)
            writer.close()
            out.flush()
            import os

            os.fsync(out.fileno())
        await conn.execute(
            delete(export_ledger).where(
                export_ledger.c.tenant_id == ctx.tenant_id, export_ledger.c.at < keep_from
            )
        )
        total = sum(counts.values())
        values: dict[str, Any] = {"cursor_at": now, "last_run_at": now}
        name = None
        if total:
            name = file_name(FileKind.PROMOTION_EXPORT, now.astimezone(UTC), str(seq))
            values["seq"] = seq
            await conn.execute(
                insert(export_file).values(
                    tenant_id=ctx.tenant_id, seq=seq, file_name=name, status="pending", window_from=since,
                    window_to=now, counts=counts, created_at=now,
                )
            )  # fmt: skip
        await conn.execute(
            update(export_cursor).where(export_cursor.c.tenant_id == ctx.tenant_id).values(**values)
        )
    if not total:
        tmp.unlink(missing_ok=True)
        return None
    await publish_pending(db, store, ctx.tenant_id, now)
    log.info("transfer.export_written tenant=%s file=%s counts=%s", ctx.tenant_id, name, counts)
    return {"file": f"{PROMOTION_EXPORT_DIR}/{name}", "counts": counts, "seq": seq}


async def run_promotion_export(job: JobContext) -> dict[str, Any]:
    store = FileStore(Path(job.payload["root"]))
    overlap = timedelta(seconds=int(job.payload.get("overlapSeconds", job.settings.export_overlap_seconds)))
    result = await export_promotions(job.db, store, job.tenant, job.now(), overlap=overlap)
    return result or {"file": None, "counts": {}}


async def schedule_exports(hk: HousekeepingContext) -> None:
    """Housekeeping: enqueue an export for every tenant whose interval has passed (one worker wins each)."""
    if not hk.scheduling:
        return
    db, now, settings = hk.db, hk.now, hk.settings
    if settings.export_interval_seconds <= 0:
        return
    due = now - timedelta(seconds=settings.export_interval_seconds)
    async with db.write() as conn:
        # A tenant seen for the first time gets its first export one interval later, like every later one.
        missing = select(tenant.c.id).where(~exists().where(export_cursor.c.tenant_id == tenant.c.id))
        for tenant_id in (await conn.execute(missing)).scalars().all():
            await conn.execute(
                insert_ignore(conn, export_cursor, {"tenant_id": tenant_id, "seq": 0, "last_run_at": now})
            )
        won = (
            (
                await conn.execute(
                    update(export_cursor)
                    .where(export_cursor.c.last_run_at.is_not(None), export_cursor.c.last_run_at <= due)
                    .values(last_run_at=now)
                    .returning(export_cursor.c.tenant_id)
                )
            )
            .scalars()
            .all()
        )
        payload = {
            "root": str(FileStore(settings.data_dir).base),
            "overlapSeconds": settings.export_overlap_seconds,
        }
        for tenant_id in won:
            await queue.enqueue(
                conn, tenant_id, PROMOTION_EXPORT_JOB, payload, now, queue=f"export:{tenant_id}"
            )


SWEEP_AFTER_SECONDS = 24 * 3600


async def sweep_files(hk: HousekeepingContext) -> None:
    """Housekeeping: remove day-old partial files left by processes that died while writing them."""
    if hk.scheduling:
        removed = FileStore(hk.settings.data_dir).sweep(SWEEP_AFTER_SECONDS)
        if removed:
            log.info("transfer.swept files=%d", removed)


async def export_all(db: Database, store: FileStore, now: datetime, *, overlap: timedelta,
                     name: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """`promoflow export promotions`: run the export now for one tenant (by name) or all of them."""
    async with db.read() as conn:
        q = select(tenant)
        if name is not None:
            q = q.where(tenant.c.name == name)
        rows = (await conn.execute(q.order_by(tenant.c.name))).all()
    if name is not None and not rows:
        raise TenantNotFoundError(f"no tenant named {name!r}")
    out = []
    for row in rows:
        result = await export_promotions(db, store, context_from_row(row), now, overlap=overlap)
        out.append({"tenant": row.name, **(result or {"file": None, "counts": {}})})
    return out
