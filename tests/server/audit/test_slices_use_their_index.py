"""The audit log's contact and promotion slices (the contact card's and the promotion page's History, the Audit
page's filters) read their own indexes, which since migration 0025 hold only the entries that name a contact or a
promotion: the filter on the column implies the index's condition, on both databases."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select, text

from promoflow.server.audit.service import AuditFilter, _conditions
from promoflow.server.db import Database
from promoflow.server.models import audit_event


def _plan(url: str, f: AuditFilter) -> str:
    e = audit_event.c
    query = (
        select(audit_event).where(*_conditions(uuid.uuid4(), f)).order_by(e.at.desc(), e.id.desc()).limit(51)
    )

    async def run() -> str:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as conn:
                compiled = query.compile(conn.engine, compile_kwargs={"literal_binds": True})
                if db.sqlite:
                    rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
                    return "\n".join(str(r[3]) for r in rows)
                await conn.execute(text("SET LOCAL enable_seqscan = off"))  # the table is small in a test
                rows = await conn.execute(text(f"EXPLAIN {compiled}"))
                return "\n".join(str(r[0]) for r in rows)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _definition(url: str, name: str) -> str:
    async def run() -> str:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as conn:
                query = (
                    "SELECT sql FROM sqlite_master WHERE name = :n"
                    if db.sqlite
                    else "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
                )
                return str((await conn.execute(text(query), {"n": name})).scalar_one())
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_the_contact_and_promotion_slices_read_their_partial_indexes(db_url: str) -> None:
    for column in ("contact_id", "promotion_id"):
        name = f"ix_audit_event_{column.removesuffix('_id')}"
        assert f"{column} IS NOT NULL" in _definition(db_url, name)
        assert name in _plan(db_url, AuditFilter(**{column: uuid.uuid4()}))  # type: ignore[arg-type]
