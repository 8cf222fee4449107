"""Report snapshots: the Reports page of a large promotion reads its figures from a stored snapshot, computed by
the worker's ``report_snapshot`` job with the API report's own code (`reporting.compute`), so the page renders at
once however many assignments the promotion has, and its numbers are the API's at the snapshot's time.

- A promotion with fewer than ``admin_report_inline_below`` assignments is counted live at each view (cheap).
- Otherwise the page shows the stored snapshot with its as-of time; one older than ``admin_report_max_age_seconds``
  (or a marketer's **Refresh**) enqueues a refresh, and the page polls until the new one is stored. With no snapshot
  yet, the page says "computing… (started at …)" and polls.
- Refreshes are deduplicated per promotion: one queued or running job per promotion (its job ``queue`` is the
  promotion's, so two never run at once), and a job finding a snapshot newer than itself does nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import assignment, job, promotion
from ..models.reports import report_snapshot
from ..promotion.service import promotion_not_found
from ..tenant.service import TenantContext
from ..worker import queue
from .reporting import Snapshot, compute

if TYPE_CHECKING:
    from ..worker.runner import JobContext

REPORT_SNAPSHOT = "report_snapshot"


def queue_of(pid: uuid.UUID) -> str:
    return f"report:{pid}"


@dataclass(frozen=True)
class Pending:
    """A refresh queued or running: since when, and its state."""

    job_id: uuid.UUID
    status: str
    created_at: datetime


async def promotion_name(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> str:
    """The tenant's promotion's name (else the same not-found as the API's report)."""
    found = await conn.scalar(
        select(promotion.c.name).where(promotion.c.id == pid, promotion.c.tenant_id == ctx.tenant_id)
    )
    if found is None:
        raise promotion_not_found(pid)
    return str(found)


async def ensure_promotion(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> None:
    await promotion_name(conn, ctx, pid)


async def is_small(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID, limit: int) -> bool:
    """Fewer than ``limit`` assignments (deleted ones included): counts at most ``limit`` index entries."""
    if limit <= 0:
        return False
    a = assignment.c
    few = (
        select(literal(1).label("one"))
        .where(a.tenant_id == ctx.tenant_id, a.promotion_id == pid)
        .limit(limit)
        .subquery()
    )
    return int(await conn.scalar(select(func.count()).select_from(few)) or 0) < limit


async def load(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> Snapshot | None:
    s = report_snapshot.c
    row = (
        await conn.execute(
            select(s.computed_at, s.payload).where(s.tenant_id == ctx.tenant_id, s.promotion_id == pid)
        )
    ).first()
    return None if row is None else Snapshot.from_payload(row.computed_at, row.payload)


async def computed_at(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> datetime | None:
    s = report_snapshot.c
    return await conn.scalar(select(s.computed_at).where(s.tenant_id == ctx.tenant_id, s.promotion_id == pid))


async def pending(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> Pending | None:
    """The promotion's refresh that is queued or running, if any."""
    j = job.c
    row = (
        await conn.execute(
            select(j.public_id, j.status, j.created_at)
            .where(
                j.queue == queue_of(pid),
                j.status.in_(("queued", "running")),
                j.tenant_id == ctx.tenant_id,
                j.kind == REPORT_SNAPSHOT,
            )
            .order_by(j.id)
            .limit(1)
        )
    ).first()
    return None if row is None else Pending(row.public_id, row.status, row.created_at)


async def last_failure(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> str | None:
    """The error of the promotion's latest refresh, if that one failed."""
    j = job.c
    row = (
        await conn.execute(
            select(j.status, j.error)
            .where(j.queue == queue_of(pid), j.tenant_id == ctx.tenant_id, j.kind == REPORT_SNAPSHOT)
            .order_by(j.id.desc())
            .limit(1)
        )
    ).first()
    return str(row.error or "failed") if row is not None and row.status == "failed" else None


async def request_refresh(
    conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID, now: datetime
) -> Pending:
    """Enqueue a refresh of the promotion's snapshot, unless one is already queued or running (that one)."""
    current = await pending(conn, ctx, pid)
    if current is not None:
        return current
    row = await queue.enqueue(conn, ctx.tenant_id, REPORT_SNAPSHOT, {"promotionId": str(pid)}, now,
                              queue=queue_of(pid), max_attempts=3)  # fmt: skip
    return Pending(row.public_id, row.status, row.created_at)


async def store(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID, snap: Snapshot) -> None:
    s = report_snapshot.c
    await conn.execute(delete(report_snapshot).where(s.tenant_id == ctx.tenant_id, s.promotion_id == pid))
    await conn.execute(
        insert(report_snapshot).values(
            tenant_id=ctx.tenant_id, promotion_id=pid, computed_at=snap.computed_at, payload=snap.payload()
        )
    )


async def run_report_snapshot(job_ctx: JobContext) -> dict[str, Any]:
    """Compute the promotion's report with the API's code and store it as the page's snapshot."""
    pid = uuid.UUID(job_ctx.payload["promotionId"])
    ctx = job_ctx.tenant
    async with job_ctx.db.read() as conn:
        have = await computed_at(conn, ctx, pid)
        if have is not None and have > job_ctx.row.created_at:
            return {"promotionId": str(pid), "skipped": "a newer snapshot is stored"}
        exists = await conn.scalar(
            select(promotion.c.id).where(promotion.c.id == pid, promotion.c.tenant_id == ctx.tenant_id)
        )
        if exists is None:
            return {"promotionId": str(pid), "skipped": "the promotion is gone"}
        snap = await compute(conn, ctx, job_ctx.now(), pid)
    async with job_ctx.db.write() as conn:
        await store(conn, ctx, pid, snap)
    return {
        "promotionId": str(pid),
        "computedAt": snap.computed_at.isoformat(),
        "assigned": snap.api["assigned"],
    }
