"""Pending contact match: a receipt whose contact is unknown is kept (a `receipt_pending` row with its normalised
key) and is finished when a contact with that key appears. This listens to the `contact_changed` hook, which fires
inside the transaction that created a contact or changed its keys — through the API or a file import alike — so
the match commits (or rolls back) together with the contact. Nothing is held in memory: a restart loses nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import contact
from ..models.receipts import receipt, receipt_pending
from .locks import lock_keys
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
    keys = [("contactId", str(contact_id))]
    keys += [(name, getattr(row, col.name)) for name, col in _KEY_COLUMNS if getattr(row, col.name)]
    await lock_keys(conn, ctx.tenant_id, keys)
    waiting = (
        (
            await conn.execute(
                select(receipt_pending.c.receipt_id)
                .join(receipt, receipt.c.id == receipt_pending.c.receipt_id)
                .where(
                    receipt_pending.c.tenant_id == ctx.tenant_id,
                    or_(
                        *(
                            and_(receipt_pending.c.key_type == t, receipt_pending.c.key_value == v)
                            for t, v in keys
                        )
                    ),
                    or_(
                        receipt_pending.c.contact_type.is_(None),
                        receipt_pending.c.contact_type == row.contact_type,
                    ),
                )
                .order_by(receipt.c.created_date, receipt.c.id)
            )
        )
        .scalars()
        .all()
    )
    service = ReceiptService(ctx, now)
    for receipt_id in waiting:
        await service.match(conn, receipt_id, contact_id)
