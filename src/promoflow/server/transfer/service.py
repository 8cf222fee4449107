"""Imports as the API shows them: a tenant's uploaded files, their status and counts, and per-record verdicts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...kit.present import without_none
from ...kit.timeutil import iso
from ...wire.xml import Verdict
from ..models import file_import, import_record, job
from ..tenant.service import TenantContext
from .errors import ImportNotFoundError, InvalidImportIdError, InvalidVerdictError


def parse_import_id(value: str) -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise InvalidImportIdError(f"import id {value!r} is not a GUID")
    return guid


def parse_verdict(value: str | None) -> str | None:
    if value is None:
        return None
    for verdict in Verdict:
        if verdict.value.lower() == value.strip().lower():
            return verdict.value
    raise InvalidVerdictError(f"unknown verdict {value!r}; one of {', '.join(v.value for v in Verdict)}")  # fmt: skip


class ImportService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    def _out(self, row: Any) -> dict[str, Any]:
        tz = self.ctx.tz
        if row.status in ("queued", "running"):
            # The job's progress: the last record committed (it survives a worker handing the job back).
            done = row.progress_done or 0
        else:
            # Finished: every record that got a verdict of this import (none for a refused or duplicate file).
            done = sum((row.counts or {}).values())
        return without_none({
            "id": str(row.public_id),
            "fileName": row.file_name,
            "folder": row.folder,
            "kind": row.kind,
            "status": row.status,
            "sizeBytes": row.size_bytes,
            "duplicateOf": str(row.duplicate_of) if row.duplicate_of else None,
            "reason": row.reason,
            "recordsTotal": row.records_total,
            "recordsDone": done,
            "counts": row.counts,
            "resultFile": row.result_file,
            "receivedOn": iso(row.received_at, tz),
            "startedOn": iso(row.started_at, tz),
            "finishedOn": iso(row.finished_at, tz),
        })  # fmt: skip

    def _select(self) -> Any:
        return (
            select(file_import, job.c.progress_done)
            .outerjoin(job, job.c.id == file_import.c.job_id)
            .where(file_import.c.tenant_id == self.ctx.tenant_id)
        )

    async def list(
        self, conn: AsyncConnection, *, offset: int, count: int, status: str | None
    ) -> dict[str, Any]:
        conds = [file_import.c.tenant_id == self.ctx.tenant_id]
        query = self._select()
        if status is not None:
            conds.append(file_import.c.status == status)
            query = query.where(file_import.c.status == status)
        total = await conn.scalar(select(func.count()).select_from(file_import).where(*conds))
        rows = (await conn.execute(query.order_by(file_import.c.id.desc()).offset(offset).limit(count))).all()
        items = [self._out(r) for r in rows]
        return {"items": items, "totalCount": int(total or 0), "offset": offset, "count": len(items)}

    async def get(
        self, conn: AsyncConnection, import_id: uuid.UUID, *, offset: int, count: int, verdict: str | None
    ) -> dict[str, Any]:
        row = (await conn.execute(self._select().where(file_import.c.public_id == import_id))).first()
        if row is None:
            raise ImportNotFoundError(f"import {import_id} not found")
        out = self._out(row)
        conds = [import_record.c.import_id == row.id]
        if verdict is not None:
            conds.append(import_record.c.verdict == verdict)
        total = await conn.scalar(select(func.count()).select_from(import_record).where(*conds))
        recs = (
            await conn.execute(
                select(import_record)
                .where(*conds)
                .order_by(import_record.c.record_index)
                .offset(offset)
                .limit(count)
            )
        ).all()
        items = []
        for r in recs:
            item: dict[str, Any] = {"index": r.record_index, "verdict": r.verdict, "line": r.line, "key": r.key,
                                    "reason": r.reason}  # fmt: skip
            item.update(r.detail or {})
            items.append(without_none(item))
        out["records"] = {
            "items": items,
            "totalCount": int(total or 0),
            "offset": offset,
            "count": len(items),
        }
        return out
