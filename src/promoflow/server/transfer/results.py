"""Per-record verdicts: stored in ``import_record`` with the record's effect, and written out as the result file.

The result file is produced from the stored verdicts when the import ends (and can be produced again at any
time), so an import that was interrupted and resumed still gets one complete result with every record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...wire.xml import (
    IMPORT_RESULTS_DIR,
    FileStatus,
    ImportResultWriter,
    RecordError,
    ResultRecord,
    Verdict,
    result_file_name,
)
from ..db import Database
from ..models import import_record
from .files import FileStore

PAGE = 2000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one input record. ``detail`` holds result attributes by their XML names (``contactId``,
    ``redeemedOn`` …)."""

    index: int
    verdict: Verdict
    line: int | None = None
    key: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None

    @classmethod
    def invalid(cls, error: RecordError) -> Outcome:
        return cls(error.index, Verdict.INVALID, error.line, _short(error.key), _text(error.reason))


def _short(value: str | None, limit: int = 255) -> str | None:
    return value[:limit] if value else None


def _text(value: str | None, limit: int = 2000) -> str | None:
    return value[:limit] if value else None


def outcome_rows(import_id: int, tenant_id: uuid.UUID, outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    return [
        {
            "import_id": import_id,
            "record_index": o.index,
            "tenant_id": tenant_id,
            "line": o.line or None,
            "verdict": o.verdict.value,
            "key": _short(o.key),
            "reason": _text(o.reason),
            "detail": o.detail,
        }
        for o in outcomes
    ]


async def save_outcomes(
    conn: AsyncConnection, import_id: int, tenant_id: uuid.UUID, outcomes: list[Outcome]
) -> None:
    """Insert the verdicts. A plain INSERT on purpose: if another worker already recorded one of these indexes
    (it took the job over), the primary key fails this transaction, and with it this batch's effects."""
    if outcomes:
        await conn.execute(insert(import_record), outcome_rows(import_id, tenant_id, outcomes))


async def done_upto(conn: AsyncConnection, import_id: int) -> int:
    """Records are applied in index order and committed in whole batches: every index up to this one is done."""
    return int(await conn.scalar(select(func.max(import_record.c.record_index)).where(import_record.c.import_id == import_id)) or 0)  # fmt: skip


async def verdict_counts(conn: AsyncConnection, import_id: int) -> dict[str, int]:
    rows = (
        await conn.execute(
            select(import_record.c.verdict, func.count())
            .where(import_record.c.import_id == import_id)
            .group_by(import_record.c.verdict)
        )
    ).all()
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    counts.update({verdict: int(n) for verdict, n in rows})
    return counts


def to_result(row: Any) -> ResultRecord:
    values: dict[str, Any] = {"index": row.record_index, "verdict": row.verdict}
    if row.key:
        values["key"] = row.key
    if row.line:
        values["line"] = row.line
    if row.reason:
        values["reason"] = row.reason
    if row.detail:
        values.update(row.detail)
    return ResultRecord.model_validate(values)


async def _write_records(db: Database, import_id: int, writer: ImportResultWriter) -> None:
    last = 0
    while True:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(import_record)
                    .where(import_record.c.import_id == import_id, import_record.c.record_index > last)
                    .order_by(import_record.c.record_index)
                    .limit(PAGE)
                )
            ).all()
        for row in rows:
            writer.write(to_result(row))
        if len(rows) < PAGE:
            return
        last = rows[-1].record_index


async def write_result_file(
    db: Database,
    store: FileStore,
    imp: Any,
    *,
    status: FileStatus = FileStatus.PROCESSED,
    reason: str | None = None,
    line: int | None = None,
    records_of: int | None = None,
) -> str:
    """Write ``importResults/<file>.result.xml`` atomically from the stored verdicts of import ``records_of``
    (default: this import); returns its FTP path."""
    name = result_file_name(imp.file_name)
    tmp = store.tmp_dir() / f"{uuid.uuid4().hex}.result.tmp"
    try:
        with open(tmp, "wb") as out:
            writer = ImportResultWriter(out, file=imp.file_name, import_id=str(imp.public_id))
            writer.open()
            if records_of is not None:
                await _write_records(db, records_of, writer)
            if status is FileStatus.REJECTED:
                writer.reject(reason or "refused", line)
            elif status is not FileStatus.PROCESSED:
                writer.summary.status = status
                writer.summary.reason = reason
            writer.close()
            _sync(out)
        store.publish(tmp, store.folder(imp.tenant_id, IMPORT_RESULTS_DIR) / name)
    finally:
        tmp.unlink(missing_ok=True)
    return f"{IMPORT_RESULTS_DIR}/{name}"


def _sync(out: IO[bytes]) -> None:
    import os

    out.flush()
    os.fsync(out.fileno())
