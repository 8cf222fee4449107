"""Pending contact match: a receipt whose contact is unknown is kept (a `receipt_pending` row with its normalised
key) and is finished when a contact with that key appears. This listens to the `contact_changed` hook, which fires
inside the transaction that created a contact or changed its keys — through the API or a file import alike — so
the match commits (or rolls back) together with the contact. Nothing is held in memory: a restart loses nothing.
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..hooks import ContactProbe, probe
from ..models import contact
from ..models.receipts import receipt, receipt_pending
from ..promotion.statements import SqliteText, compile_sqlite
from .locks import lock_id, lock_keys
from .service import ReceiptService

if TYPE_CHECKING:
    from ..tenant.service import TenantContext

_KEY_COLUMNS = (
    ("email", contact.c.email),
    ("mobilePhone", contact.c.mobile_phone),
    ("socialSecurityNumber", contact.c.ssn),
    ("memberNumber", contact.c.member_number),
    ("externalId", contact.c.external_id),
)


async def match_pending(
    conn: AsyncConnection, ctx: TenantContext, contact_id: uuid.UUID, now: datetime
) -> None:
    """Match every receipt waiting for one of this contact's keys (oldest sale first) and apply it."""
    row = (
        await conn.execute(
            select(contact.c.contact_type, *(col for _, col in _KEY_COLUMNS)).where(
                contact.c.id == contact_id, contact.c.tenant_id == ctx.tenant_id
            )
        )
    ).first()
    if row is None:
        return
    keys = contact_keys(contact_id, dict(row._mapping))
    await lock_keys(conn, ctx.tenant_id, keys)
    waiting = (
        (
            await conn.execute(
                select(receipt_pending.c.receipt_id)
                .join(receipt, receipt.c.id == receipt_pending.c.receipt_id)
                .where(_waiting_for(ctx.tenant_id, row.contact_type, keys))
                .order_by(receipt.c.created_date, receipt.c.id)
            )
        )
        .scalars()
        .all()
    )
    service = ReceiptService(ctx, now)
    for receipt_id in waiting:
        await service.match(conn, receipt_id, contact_id)


def _waiting_for(tenant: Any, contact_type: Any, keys: Sequence[tuple[Any, Any]]) -> Any:
    """The `receipt_pending` rows waiting for a contact of that type with one of those (key type, value) pairs:
    each pair a whole look-up of the key's index (tenant, type, value). With the tenant outside the OR, SQLite
    without statistics searches the index by tenant alone, through every receipt the tenant has waiting."""
    p = receipt_pending.c
    of_type = or_(p.contact_type.is_(None), p.contact_type == contact_type)
    return or_(*(and_(p.tenant_id == tenant, p.key_type == t, p.key_value == v, of_type) for t, v in keys))


def contact_keys(contact_id: uuid.UUID, columns: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """The (key type, value) pairs a receipt may be waiting on for this contact: its id and its key columns."""
    keys = [("contactId", str(contact_id))]
    keys += [(name, v) for name, col in _KEY_COLUMNS if (v := columns.get(col.name))]
    return keys


# The quick paths' question (hooks.ContactProbe): is a receipt waiting for one of these keys? The same look-up as
# `match_pending`'s, after the same locks, in one call: the function of migration 0023 takes the locks and then
# reads with a snapshot of its own (a single statement's would predate the wait for the locks).
_PG_WAITING = "receipt_waiting(%(t)s, %(ct)s, %(keys)s, %(locks)s)"


@functools.cache
def _sqlite_waiting_statement(n: int) -> SqliteText:
    """The question for ``n`` keys (one statement per count, compiled once: the key pairs as parameters
    ``kI``/``vI``, each pair an index look-up)."""
    pairs = [(bindparam(f"k{i}", type_=String()), bindparam(f"v{i}", type_=String())) for i in range(n)]
    tenant = bindparam("t", type_=receipt_pending.c.tenant_id.type)
    contact_type = bindparam("ct", type_=receipt_pending.c.contact_type.type)
    return compile_sqlite(
        select(
            exists()
            .select_from(receipt_pending.join(receipt, receipt.c.id == receipt_pending.c.receipt_id))
            .where(_waiting_for(tenant, contact_type, pairs))
        )
    )


def _sqlite_waiting_query(tenant_id: uuid.UUID, contact_type: str,
                          keys: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The question's text and parameters for these keys."""
    stmt = _sqlite_waiting_statement(len(keys))
    pairs = {}
    for i, (kind, value) in enumerate(keys):
        pairs[f"k{i}"], pairs[f"v{i}"] = kind, value
    return stmt.sql, stmt.params(t=tenant_id, ct=contact_type, **pairs)


def _sqlite_waiting(conn: sqlite3.Connection, tenant_id: uuid.UUID, contact_type: str,
                    keys: list[tuple[str, str]]) -> bool:  # fmt: skip
    row = conn.execute(*_sqlite_waiting_query(tenant_id, contact_type, keys)).fetchone()
    return bool(row and row[0])


probe(
    match_pending,
    ContactProbe(
        keys=contact_keys,
        lock_ids=lambda tenant_id, keys: sorted({lock_id(tenant_id, kt, v) for kt, v in keys}),
        pg_condition=_PG_WAITING,
        sqlite_has_work=_sqlite_waiting,
    ),
)
