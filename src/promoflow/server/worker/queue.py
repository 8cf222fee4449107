"""Durable jobs as rows in the same database (ARCHITECTURE §3).

Enqueued inside the transaction that caused them; claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so any
number of worker processes can share the table; on SQLite writes are serialised, so a plain claim is safe.
Jobs of one ``queue`` (a tenant's uploads) run one at a time in the order they were enqueued.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.timeutil import iso
from ..models import job
from ..tenant.service import TenantContext
from .errors import JobNotFoundError


async def enqueue(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    queue: str | None = None,
    total: int | None = None,
    max_attempts: int = 5,
) -> Any:
    public_id = uuid.uuid4()
    await conn.execute(
        insert(job).values(
            public_id=public_id,
            tenant_id=tenant_id,
            kind=kind,
            queue=queue,
            payload=payload,
            status="queued",
            attempts=0,
            max_attempts=max_attempts,
            run_after=now,
            progress_done=0,
            progress_total=total,
            created_at=now,
        )
    )
    return (await conn.execute(select(job).where(job.c.public_id == public_id))).first()


_CLAIM_PG = text(
    """
    UPDATE job SET status = 'running', locked_by = :worker, heartbeat_at = :now, attempts = attempts + 1
    WHERE id = (
        SELECT j.id FROM job j
        WHERE j.status = 'queued' AND j.run_after <= :due
          AND (j.queue IS NULL OR NOT EXISTS (
                SELECT 1 FROM job e WHERE e.queue = j.queue AND e.id < j.id AND e.status IN ('queued', 'running')))
        ORDER BY j.id
        FOR UPDATE SKIP LOCKED
        LIMIT 1)
    RETURNING id
    """
)


async def claim(
    conn: AsyncConnection, worker: str, now: datetime, *, due: datetime | None = None
) -> Any | None:
    """Take the next runnable job (due at ``due``, by default now), or None. A queue's next job is runnable only
    when no earlier job of that queue is queued or running, so a queue never has two jobs running at once."""
    due = now if due is None else due
    if conn.dialect.name == "postgresql":
        job_id = await conn.scalar(_CLAIM_PG, {"worker": worker, "now": now, "due": due})
    else:
        e = job.alias("e")
        blocked = (
            select(e.c.id)
            .where(e.c.queue == job.c.queue, e.c.id < job.c.id, e.c.status.in_(("queued", "running")))
            .exists()
        )
        job_id = await conn.scalar(
            select(job.c.id)
            .where(
                job.c.status == "queued",
                job.c.run_after <= due,
                (job.c.queue.is_(None)) | ~blocked,
            )
            .order_by(job.c.id)
            .limit(1)
        )
        if job_id is not None:
            await conn.execute(
                update(job)
                .where(job.c.id == job_id)
                .values(status="running", locked_by=worker, heartbeat_at=now, attempts=job.c.attempts + 1)
            )
    if job_id is None:
        return None
    return (await conn.execute(select(job).where(job.c.id == job_id))).first()


async def heartbeat(conn: AsyncConnection, job_id: int, worker: str, now: datetime, done: int | None = None,
                    total: int | None = None) -> bool:  # fmt: skip
    """Record progress; False when the job is no longer ours (it was recovered by another worker)."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if done is not None:
        values["progress_done"] = done
    if total is not None:
        values["progress_total"] = total
    result = await conn.execute(
        update(job)
        .where(job.c.id == job_id, job.c.locked_by == worker, job.c.status == "running")
        .values(**values)
    )
    return bool(result.rowcount)


async def succeed(
    conn: AsyncConnection, job_id: int, worker: str, now: datetime, result: dict[str, Any]
) -> bool:
    res = await conn.execute(
        update(job)
        .where(job.c.id == job_id, job.c.locked_by == worker, job.c.status == "running")
        .values(status="succeeded", result=result, finished_at=now, heartbeat_at=now, error=None)
    )
    return bool(res.rowcount)


async def release(conn: AsyncConnection, job_id: int, worker: str, now: datetime) -> bool:
    """A job stopped by its worker's shutdown goes back to the queue, due now; the attempt (counted when it was
    claimed) does not count."""
    res = await conn.execute(
        update(job)
        .where(job.c.id == job_id, job.c.locked_by == worker, job.c.status == "running")
        .values(status="queued", locked_by=None, run_after=now, heartbeat_at=now, attempts=job.c.attempts - 1)
    )
    return bool(res.rowcount)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300, 2 ** max(0, attempts)))


async def fail(
    conn: AsyncConnection, row: Any, worker: str, now: datetime, error: str, *, permanent: bool = False
) -> None:
    """Retry later with backoff, or give up once the attempts are spent."""
    if permanent or row.attempts >= row.max_attempts:
        values: dict[str, Any] = {"status": "failed", "error": error[:4000], "finished_at": now}
    else:
        values = {
            "status": "queued",
            "error": error[:4000],
            "run_after": now + backoff(row.attempts),
            "locked_by": None,
        }
    await conn.execute(
        update(job)
        .where(job.c.id == row.id, job.c.locked_by == worker, job.c.status == "running")
        .values(**values)
    )


async def recover_stalled(conn: AsyncConnection, now: datetime, stall: timedelta) -> int:
    """Jobs whose worker stopped heart-beating (killed, machine lost) go back to the queue."""
    result = await conn.execute(
        update(job)
        .where(and_(job.c.status == "running", job.c.heartbeat_at < now - stall))
        .values(status="queued", locked_by=None, run_after=now)
    )
    return int(result.rowcount or 0)


def job_out(row: Any, tz: Any) -> dict[str, Any]:
    """The `JobOut` answer; absent optional fields are left out (as every answer, issue 11 §4)."""
    out = {
        "id": str(row.public_id),
        "kind": row.kind,
        "status": row.status,
        "progressDone": row.progress_done,
        "progressTotal": row.progress_total,
        "result": row.result,
        "error": row.error,
        "createdOn": iso(row.created_at, tz),
        "finishedOn": iso(row.finished_at, tz),
    }
    return {k: v for k, v in out.items() if v is not None}


async def get_job_out(conn: AsyncConnection, ctx: TenantContext, public_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await conn.execute(select(job).where(job.c.public_id == public_id, job.c.tenant_id == ctx.tenant_id))
    ).first()
    if row is None:
        raise JobNotFoundError(f"job {public_id} not found")
    return job_out(row, ctx.tz)
