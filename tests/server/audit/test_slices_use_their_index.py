"""The audit log's contact and promotion slices (the contact card's and the promotion page's History, the Audit
page's filters) read their own indexes, which since migration 0025 hold only the entries that name a contact or a
promotion: the filter on the column implies the index's condition, on both databases. Since migration 0026 the
object index leaves out a contact's own entries (the contact index holds them): an object filter reads both
indexes, and finds every entry about the object."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql

from promoflow.server.audit import Actor
from promoflow.server.audit.service import AuditFilter, _query, entry_values, page
from promoflow.server.db import Database, sqlite_file
from promoflow.server.models import audit_event
from promoflow.server.promotion.statements import compile_sqlite


def _plan(url: str, f: AuditFilter, *slices: str) -> str:
    """The filter's plan, as the app runs it: with its values as bound parameters (a partial index's condition
    must then be in the query's own text), on PostgreSQL as the generic plan of a prepared statement (what the
    driver's prepared statements may get after their first executions). On PostgreSQL the table is small in a
    test, and every audit index leads with the tenant: the planner may then take any of them (or the time index,
    which also gives the order) and filter, whatever the statistics other tests left. The question here is
    whether the ``slices``' indexes can serve the filter, so the others are dropped for the EXPLAIN's
    transaction (rolled back) and sequential scans are off."""
    query = _query(uuid.uuid4(), f, (datetime.now(UTC), 10**9), 51)
    path = sqlite_file(url) if url.startswith("sqlite") else None
    if path is not None:
        stmt = compile_sqlite(query)
        with contextlib.closing(sqlite3.connect(path)) as lite:
            return "\n".join(str(r[3]) for r in lite.execute(f"EXPLAIN QUERY PLAN {stmt.sql}", stmt.params()))

    async def run() -> str:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as conn:
                await conn.execute(text("SET LOCAL enable_seqscan = off"))
                await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
                for index in audit_event.indexes:
                    if index.name not in slices:
                        await conn.execute(text(f"DROP INDEX {index.name}"))
                compiled = query.compile(dialect=postgresql.dialect(paramstyle="numeric_dollar"))
                await conn.exec_driver_sql(f"PREPARE audit_plan AS {compiled}")
                # (EXECUTE takes no parameters: its values as quoted literals, of the types PREPARE inferred.)
                values = [compiled.params[name] for name in compiled.positiontup or ()]
                args = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
                rows = await conn.exec_driver_sql(f"EXPLAIN EXECUTE audit_plan({args})")
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
        assert name in _plan(db_url, AuditFilter(**{column: uuid.uuid4()}), name)  # type: ignore[arg-type]


def test_an_object_filter_reads_the_object_index_and_for_a_contact_the_contact_index(db_url: str) -> None:
    definition = _definition(db_url, "ix_audit_event_object")
    assert (
        "<> 'contact'" in definition.replace("'contact'::text", "'contact'")
        and "contact_id IS NULL" in definition
    )
    assert "ix_audit_event_object" in _plan(db_url, AuditFilter(object_id="ftp-pos"), "ix_audit_event_object")
    plan = _plan(
        db_url, AuditFilter(object_id=str(uuid.uuid4())), "ix_audit_event_object", "ix_audit_event_contact"
    )
    assert "ix_audit_event_object" in plan and "ix_audit_event_contact" in plan, plan


def test_an_object_filter_finds_every_entry_about_its_object(db_url: str) -> None:
    """A contact's own entries (only in the contact index), an assignment of it (object index: its object is the
    assignment), a promotion (object index), an object whose id is no GUID; newest first, paged."""
    tenant, contact, promotion, assignment = (uuid.uuid4() for _ in range(4))
    actor, t0 = Actor.cli(), datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        entry_values(tenant, actor, "contact.create", "contact", contact, after={"a": 1}, at=t0,
                     contact_id=contact),
        entry_values(tenant, actor, "assignment.create", "assignment", assignment, at=t0 + timedelta(seconds=1),
                     contact_id=contact, promotion_id=promotion),
        entry_values(tenant, actor, "contact.update", "contact", contact, {"a": 1}, {"a": 2},
                     at=t0 + timedelta(seconds=2), contact_id=contact),
        entry_values(tenant, actor, "promotion.create", "promotion", promotion, at=t0, promotion_id=promotion),
        entry_values(tenant, actor, "ftp.rotate", "ftp_account", "pos-1", at=t0),
        entry_values(uuid.uuid4(), actor, "contact.update", "contact", contact, {"a": 1}, {"a": 3}, at=t0,
                     contact_id=contact),  # another tenant's (the same id): never
    ]  # fmt: skip

    async def run() -> dict[str, list[str]]:
        db = Database(db_url, pool_size=1)
        try:
            async with db.write() as conn:
                await conn.execute(insert(audit_event), rows)
            found: dict[str, list[str]] = {}
            async with db.read() as conn:
                for name, object_id in (("contact", str(contact)), ("assignment", str(assignment)),
                                        ("promotion", str(promotion)), ("account", "pos-1")):  # fmt: skip
                    first, cursor = await page(conn, tenant, AuditFilter(object_id=object_id), size=1)
                    rest = (
                        (await page(conn, tenant, AuditFilter(object_id=object_id), cursor))[0]
                        if cursor
                        else []
                    )
                    found[name] = [e.action for e in first + rest]
            return found
        finally:
            await db.dispose()

    assert asyncio.run(run()) == {
        "contact": ["contact.update", "contact.create"],
        "assignment": ["assignment.create"],
        "promotion": ["promotion.create"],
        "account": ["ftp.rotate"],
    }


def test_an_entry_about_a_contact_must_name_it_as_its_contact() -> None:
    contact = uuid.uuid4()
    with pytest.raises(ValueError, match="names it as its contact"):
        entry_values(uuid.uuid4(), Actor.cli(), "contact.update", "contact", contact, {"a": 1}, {"a": 2})
    with pytest.raises(ValueError, match="names it as its contact"):
        entry_values(uuid.uuid4(), Actor.cli(), "contact.update", "contact", contact, contact_id=uuid.uuid4())
