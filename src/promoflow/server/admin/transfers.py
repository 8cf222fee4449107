"""What the Imports screen shows: the tenant's uploaded files and their per-record verdicts (the rows the file
importer wrote, `transfer/importer.py`), the background jobs, and the files an import may be downloaded as.

Lists page by keyset (newest first by the import's row id, records by their index in the file), so page 1,000 of a
million rows costs what page 1 does. Files are found from the import's row, never from a path the browser sends, and
must resolve inside the tenant's own folders.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...wire.xml import PROCESSED_DIR, Verdict
from ..exceptions import NotFoundError
from ..models import file_import, import_record, job, promotion
from ..promotion.bulk import BULK_ASSIGN
from ..tenant.service import TenantContext
from ..transfer.errors import ImportNotFoundError
from ..transfer.files import FileStore
from ..transfer.inbox import FILE_IMPORT_JOB
from .gateway import run_summary

PAGE_SIZE = 50
RECORD_PAGE_SIZE = 50

STATUS_TEXT = {
    "queued": "Waiting",
    "running": "Importing",
    "done": "Imported",
    "rejected": "Rejected",
    "duplicate": "Duplicate",
    "failed": "Failed",
}
VERDICT_TEXT = {
    "applied": "applied",
    "duplicate": "duplicate",
    "conflictAlreadyRedeemed": "already redeemed",
    "expired": "expired",
    "notFound": "not found",
    "invalid": "invalid",
}
VERDICTS = tuple(v.value for v in Verdict)
JOB_TEXT = {
    BULK_ASSIGN: "Bulk assignment",
    "promotion_export": "Promotion export",
    "retention": "Retention clean-up",
}


@dataclass
class ImportLine:
    id: uuid.UUID
    kind: str | None
    folder: str
    file_name: str
    received_at: datetime
    finished_at: datetime | None
    status: str
    reason: str | None
    total: int | None
    done: int
    counts: dict[str, int]
    size: int | None
    has_result: bool
    has_original: bool
    duplicate_of: uuid.UUID | None

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def why(self) -> str:
        """Why a file was refused or failed, in words (the importer's reason, which names the line when it can)."""
        if self.status == "rejected":
            return f"Rejected: {self.reason or 'the file was refused'}. Nothing in it was applied."
        if self.status == "failed":
            return f"Failed: {self.reason or 'the import failed'}."
        if self.status == "duplicate":
            base = (
                f"Not applied again: the same content as import {self.duplicate_of}"
                if self.duplicate_of
                else ""
            )
            return (self.reason and f"Not applied again: {self.reason}.") or (base + ".")
        return ""

    def count_items(self) -> list[tuple[str, str, int]]:
        """(verdict, words, count) for the verdicts that occurred."""
        order = {v: i for i, v in enumerate(VERDICTS)}
        ranked = sorted(self.counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        return [(v, VERDICT_TEXT.get(v, v), n) for v, n in ranked if n]


def _line(r: Any) -> ImportLine:
    running = r.status in ("queued", "running")
    counts = {str(k): int(v) for k, v in (r.counts or {}).items()}
    return ImportLine(
        id=r.public_id, kind=r.kind, folder=r.folder, file_name=r.file_name,
        received_at=r.received_at, finished_at=r.finished_at,
        status=r.status, reason=r.reason, total=r.records_total,
        done=int(r.progress_done or 0) if running else sum(counts.values()), counts=counts, size=r.size_bytes,
        has_result=bool(r.result_file), has_original=bool(r.content_hash), duplicate_of=r.duplicate_of,
    )  # fmt: skip


_COLUMNS = (
    file_import.c.id, file_import.c.public_id, file_import.c.kind, file_import.c.folder, file_import.c.file_name,
    file_import.c.received_at, file_import.c.finished_at, file_import.c.status, file_import.c.reason,
    file_import.c.records_total, file_import.c.counts, file_import.c.size_bytes, file_import.c.result_file,
    file_import.c.content_hash, file_import.c.duplicate_of, job.c.progress_done,
)  # fmt: skip


async def list_imports(
    conn: AsyncConnection, ctx: TenantContext, *, status: str | None, after: str | None, size: int = PAGE_SIZE
) -> tuple[list[ImportLine], str | None]:
    """A page of imports, newest first, and the cursor of the next page (the last import's public id)."""
    fi = file_import.c
    conds = [fi.tenant_id == ctx.tenant_id]
    if status in STATUS_TEXT:
        conds.append(fi.status == status)
    cursor = parse_guid(after or "")
    if cursor is not None:
        last = await conn.scalar(select(fi.id).where(fi.public_id == cursor, fi.tenant_id == ctx.tenant_id))
        if last is not None:
            conds.append(fi.id < last)
    rows = (
        await conn.execute(
            select(*_COLUMNS)
            .outerjoin(job, job.c.id == fi.job_id)
            .where(and_(*conds))
            .order_by(fi.id.desc())
            .limit(size + 1)
        )
    ).all()
    more = len(rows) > size
    rows = rows[:size]
    lines = [_line(r) for r in rows]
    return lines, (str(rows[-1].public_id) if more and rows else None)


async def _row(conn: AsyncConnection, ctx: TenantContext, import_id: uuid.UUID) -> Any:
    fi = file_import.c
    row = (
        await conn.execute(
            select(*_COLUMNS, fi.tenant_id, fi.stored_path)
            .outerjoin(job, job.c.id == fi.job_id)
            .where(fi.public_id == import_id, fi.tenant_id == ctx.tenant_id)
        )
    ).first()
    if row is None:
        raise ImportNotFoundError(f"import {import_id} not found")
    return row


async def get_import(conn: AsyncConnection, ctx: TenantContext, import_id: uuid.UUID) -> ImportLine:
    return _line(await _row(conn, ctx, import_id))


@dataclass
class RecordLine:
    index: int
    line: int | None
    verdict: str
    key: str | None
    reason: str | None
    contact_id: str | None
    detail: dict[str, Any]

    @property
    def verdict_text(self) -> str:
        return VERDICT_TEXT.get(self.verdict, self.verdict)


@dataclass
class RecordFilter:
    verdict: str | None = None
    search: str = ""


async def list_records(
    conn: AsyncConnection, ctx: TenantContext, import_id: uuid.UUID, f: RecordFilter, after: int | None,
    size: int = RECORD_PAGE_SIZE,
) -> tuple[list[RecordLine], int | None]:  # fmt: skip
    """A page of the import's per-record results in file order, from record ``after`` on; a search matches the
    record's key (the coupon of a redemption, the promotion or contact key of other files) or its contact id."""
    internal = await conn.scalar(
        select(file_import.c.id).where(file_import.c.public_id == import_id, file_import.c.tenant_id == ctx.tenant_id)
    )  # fmt: skip
    if internal is None:
        raise ImportNotFoundError(f"import {import_id} not found")
    r = import_record.c
    conds = [r.import_id == internal, r.tenant_id == ctx.tenant_id]
    if after is not None:
        conds.append(r.record_index > after)
    if f.verdict in VERDICTS:
        conds.append(r.verdict == f.verdict)
    text = f.search.strip()[:255]
    if text:
        conds.append(or_(r.key == text, r.detail["contactId"].as_string() == text))
    rows = (
        await conn.execute(select(import_record).where(and_(*conds)).order_by(r.record_index).limit(size + 1))
    ).all()
    more = len(rows) > size
    rows = rows[:size]
    out = [
        RecordLine(
            x.record_index,
            x.line,
            x.verdict,
            x.key,
            x.reason,
            (x.detail or {}).get("contactId"),
            {k: v for k, v in (x.detail or {}).items() if k != "contactId"},
        )  # fmt: skip
        for x in rows
    ]
    return out, (rows[-1].record_index if more and rows else None)


# -------------------------------------------------------------------------------------------------- files


def _inside(root: Path, relpath: str) -> Path | None:
    """``root/relpath`` if it is a regular file inside ``root`` (no ``..``, no symbolic link out), else None."""
    base = root.resolve()
    path = (base / relpath.lstrip("/")).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def result_file(
    conn: AsyncConnection, ctx: TenantContext, store: FileStore, import_id: uuid.UUID
) -> Path:
    row = await _row(conn, ctx, import_id)
    if not row.result_file:
        raise NotFoundError("this import has no result file yet")
    path = _inside(store.tenant_root(ctx.tenant_id), row.result_file)
    if path is None:
        raise NotFoundError("the result file is no longer on the server (it was deleted from the FTP folder)")
    return path


async def original_file(
    conn: AsyncConnection, ctx: TenantContext, store: FileStore, import_id: uuid.UUID
) -> tuple[Path, str]:
    """The bytes that were uploaded: still in the inbox, or moved to processed/ (under its name, or its name with the
    import id when the name was taken); a candidate is served only if its content hash is the upload's."""
    row = await _row(conn, ctx, import_id)
    if not row.content_hash:
        raise NotFoundError("this file was refused by its name: no bytes of it were kept")
    candidates: list[Path | None] = []
    if row.stored_path:
        candidates.append(_inside(store.base / "transfer" / "inbox" / str(ctx.tenant_id),
                                  Path(row.stored_path).name))  # fmt: skip
    processed = store.tenant_root(ctx.tenant_id)
    stem, dot, ext = row.file_name.rpartition(".")
    alt = f"{stem}.{row.public_id.hex[:12]}.{ext}" if dot else f"{row.file_name}.{row.public_id.hex[:12]}"
    for name in (alt, row.file_name):
        candidates.append(_inside(processed, f"{PROCESSED_DIR}/{name}"))
    for path in candidates:
        if path is not None and await asyncio.to_thread(_sha256, path) == row.content_hash:
            return path, row.file_name
    raise NotFoundError(
        "the uploaded file is no longer on the server (it was deleted from the processed folder)"
    )


# --------------------------------------------------------------------------------------------------- jobs


@dataclass
class JobLine:
    id: uuid.UUID
    kind: str
    status: str
    done: int
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    promotion_id: str | None
    admin_run: bool
    counts: dict[str, int] | None = None  # an assignment run's check (`gateway.run_summary`)
    promotion_name: str | None = None

    @property
    def kind_text(self) -> str:
        return JOB_TEXT.get(self.kind, self.kind.replace("_", " ").capitalize())

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def summary(self) -> str:
        """The job's result in words."""
        if self.status == "failed":
            return f"Failed: {self.error or 'no reason recorded'}"
        if self.running:
            return "Waiting" if self.status == "queued" else "Running"
        res = self.result or {}
        if self.kind == BULK_ASSIGN:
            return run_summary(res, self.counts or {})
        if self.kind == "promotion_export":
            if res.get("file"):
                counts = ", ".join(f"{k} {v:,}" for k, v in sorted((res.get("counts") or {}).items()))
                return f"Wrote {res['file']}" + (f" ({counts})" if counts else "")
            return "Nothing new to export"
        return "Done"


async def list_jobs(
    conn: AsyncConnection, ctx: TenantContext, *, after: str | None, size: int = PAGE_SIZE
) -> tuple[list[JobLine], str | None]:
    """The tenant's background jobs other than file imports (those are the imports), newest first."""
    j = job.c
    conds = [j.tenant_id == ctx.tenant_id, j.kind != FILE_IMPORT_JOB]
    cursor = parse_guid(after or "")
    if cursor is not None:
        last = await conn.scalar(select(j.id).where(j.public_id == cursor, j.tenant_id == ctx.tenant_id))
        if last is not None:
            conds.append(j.id < last)
    rows = (
        await conn.execute(
            select(j.id, j.public_id, j.kind, j.status, j.progress_done, j.progress_total, j.result, j.error,
                   j.created_at, j.finished_at, j.payload["promotionId"].as_string().label("promotion_id"),
                   j.payload["admin"]["origin"].as_string().label("origin"),
                   j.payload["admin"]["counts"].label("counts"))
            .where(and_(*conds)).order_by(j.id.desc()).limit(size + 1)
        )
    ).all()  # fmt: skip
    more = len(rows) > size
    rows = rows[:size]
    lines = [
        JobLine(
            r.public_id,
            r.kind,
            r.status,
            int(r.progress_done or 0),
            r.progress_total,
            r.result,
            r.error,
            r.created_at,
            r.finished_at,
            r.promotion_id,
            r.kind == BULK_ASSIGN and r.origin is not None,
            r.counts if isinstance(r.counts, dict) else None,
        )  # fmt: skip
        for r in rows
    ]
    pids = {p for line in lines if (p := parse_guid(line.promotion_id or "")) is not None}
    if pids:
        names = dict(
            (await conn.execute(
                select(promotion.c.id, promotion.c.name)
                .where(promotion.c.tenant_id == ctx.tenant_id, promotion.c.id.in_(pids))
            )).all()
        )  # fmt: skip
        for line in lines:
            line.promotion_name = names.get(parse_guid(line.promotion_id or ""))
    return lines, (str(rows[-1].public_id) if more and rows else None)
