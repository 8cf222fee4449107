"""The inbox: a completed upload becomes an import record and its job in one transaction.

Every import of a tenant runs on the tenant's transfer queue, so its files are processed one at a time in
upload order; a file refused by name or found to duplicate an earlier upload still gets a job, which writes its
result file in that same order.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..dialect import insert_ignore
from ..models import file_import, import_content
from ..worker import queue

log = logging.getLogger("promoflow.transfer")

FILE_IMPORT_JOB = "file_import"
MAX_ATTEMPTS = 5


def transfer_queue(tenant_id: uuid.UUID) -> str:
    return f"transfer:{tenant_id}"


@dataclass(frozen=True)
class Accepted:
    import_id: uuid.UUID
    status: str
    duplicate_of: uuid.UUID | None = None


async def _enqueue(conn: AsyncConnection, tenant_id: uuid.UUID, row_id: int, public_id: uuid.UUID, root: str,
                   now: datetime) -> None:  # fmt: skip
    # The data dir of the server that took the file: the worker reads the inbox and writes results there.
    job = await queue.enqueue(
        conn,
        tenant_id,
        FILE_IMPORT_JOB,
        {"importId": str(public_id), "root": root},
        now,
        queue=transfer_queue(tenant_id),
        max_attempts=MAX_ATTEMPTS,
    )
    await conn.execute(update(file_import).where(file_import.c.id == row_id).values(job_id=job.id))


async def record_upload(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    import_id: uuid.UUID,
    folder: str,
    name: str,
    kind: str,
    stored_path: str,
    size: int,
    content_hash: str,
    root: str,
    now: datetime,
) -> Accepted:
    """Record a completed upload and enqueue its import; the same content seen before is a duplicate."""
    row_id = await conn.scalar(
        insert(file_import)
        .values(
            public_id=import_id,
            tenant_id=tenant_id,
            kind=kind,
            folder=folder,
            file_name=name,
            content_hash=content_hash,
            size_bytes=size,
            stored_path=stored_path,
            status="queued",
            received_at=now,
        )
        .returning(file_import.c.id)
    )
    first = await conn.scalar(
        insert_ignore(
            conn, import_content, {"tenant_id": tenant_id, "content_hash": content_hash, "import_id": row_id}
        ).returning(import_content.c.import_id)
    )
    duplicate_of = None
    status = "queued"
    if first is None:
        duplicate_of = await conn.scalar(
            select(file_import.c.public_id)
            .join(import_content, import_content.c.import_id == file_import.c.id)
            .where(import_content.c.tenant_id == tenant_id, import_content.c.content_hash == content_hash)
        )
        status = "duplicate"
        await conn.execute(
            update(file_import)
            .where(file_import.c.id == row_id)
            .values(status=status, duplicate_of=duplicate_of)
        )
    await _enqueue(conn, tenant_id, row_id, import_id, root, now)
    return Accepted(import_id, status, duplicate_of)


async def record_refused(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, folder: str, name: str, kind: str | None, reason: str,
    root: str, now: datetime,
) -> Accepted:  # fmt: skip
    """A file refused before any byte was accepted (its name); its job writes the result file saying why."""
    import_id = uuid.uuid4()
    row_id = await conn.scalar(
        insert(file_import)
        .values(
            public_id=import_id,
            tenant_id=tenant_id,
            kind=kind,
            folder=folder,
            file_name=name,
            status="rejected",
            reason=reason,
            received_at=now,
        )
        .returning(file_import.c.id)
    )
    await _enqueue(conn, tenant_id, row_id, import_id, root, now)
    return Accepted(import_id, "rejected")


async def forget_content(conn: AsyncConnection, row: Any) -> None:
    """After an import failed for good, the same content may be uploaded again and processed."""
    if row.content_hash:
        await conn.execute(
            import_content.delete().where(
                import_content.c.tenant_id == row.tenant_id,
                import_content.c.content_hash == row.content_hash,
                import_content.c.import_id == row.id,
            )
        )
