"""The assignment ledger (extension): every assignment's append-only history, newest last.

Nothing is written twice for it: 'assigned' and 'deleted' come from the assignment row, 'redeemed' (how, where,
when) from the redemption rows, 'linked' from the receipt links, 'shown' from the contact's `promotion_view`
rows that hold the assignment, and 'reactivated' (and any other event a feature records) from `assignment_event`
rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.timeutil import iso
from ..models import assignment, assignment_event, redemption
from ..models.receipts import promotion_view, receipt_promotion
from ..promotion.errors import PromotionNotFoundError
from ..tenant.service import TenantContext

_ORDER = {"assigned": 0, "shown": 1, "redeemed": 2, "linked": 3, "reactivated": 4, "deleted": 5}


class LedgerService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def events(self, conn: AsyncConnection, assignment_id: uuid.UUID) -> dict[str, Any]:
        tid = self.ctx.tenant_id
        a = (
            await conn.execute(
                select(assignment).where(assignment.c.id == assignment_id, assignment.c.tenant_id == tid)
            )
        ).first()
        if a is None:
            raise PromotionNotFoundError(f"promotion {assignment_id} not found")
        found: list[tuple[datetime, int, dict[str, Any]]] = []

        def add(kind: str, at: datetime, **fields: Any) -> None:
            event = {"type": kind, "at": iso(at, self.ctx.tz), **fields}
            found.append((at, _ORDER.get(kind, 9), event))

        add(
            "assigned",
            a.created_at,
            via=a.source,
            detail={"validFrom": iso(a.valid_from, self.ctx.tz), "expiresOn": iso(a.valid_to, self.ctx.tz)},
        )
        for r in await conn.execute(
            select(redemption).where(redemption.c.assignment_id == assignment_id).order_by(redemption.c.seq)
        ):
            add(
                "redeemed",
                r.redeemed_at,
                via=r.via,
                channel=r.channel,
                storeExternalId=r.store_external_id,
                uniqueReceiptId=r.unique_receipt_id,
                detail={"seq": r.seq, "recordedAt": iso(r.created_at, self.ctx.tz)},
            )
        for link in await conn.execute(
            select(receipt_promotion)
            .where(receipt_promotion.c.assignment_id == assignment_id)
            .order_by(receipt_promotion.c.id)
        ):
            add(
                "linked",
                link.linked_at,
                storeExternalId=link.store_external_id,
                uniqueReceiptId=link.unique_receipt_id,
                detail={
                    "as": link.kind,
                    "redemptionSeq": link.redemption_seq,
                    "receiptDate": iso(link.created_date, self.ctx.tz),
                },
            )
        views = select(promotion_view).where(
            promotion_view.c.tenant_id == tid,
            promotion_view.c.contact_id == a.contact_id,
            promotion_view.c.at >= a.created_at,
        )
        if conn.dialect.name == "postgresql":
            views = views.where(literal(assignment_id) == func.any(promotion_view.c.assignment_ids))
        for v in await conn.execute(views.order_by(promotion_view.c.id)):
            if assignment_id in v.assignment_ids:
                add("shown", v.at, storeExternalId=v.store_external_id,
                    detail={"count": v.times, "lastAt": iso(v.last_at, self.ctx.tz)})  # fmt: skip
        for ev in await conn.execute(
            select(assignment_event)
            .where(assignment_event.c.assignment_id == assignment_id)
            .order_by(assignment_event.c.id)
        ):
            add(
                ev.kind,
                ev.at,
                via=ev.via,
                channel=ev.channel,
                storeExternalId=ev.store_external_id,
                uniqueReceiptId=ev.unique_receipt_id,
                detail=ev.detail,
            )
        if a.deleted_at is not None:
            add("deleted", a.deleted_at)
        found.sort(key=lambda e: (e[0], e[1]))
        return {
            "assignmentId": str(a.id),
            "promotionId": str(a.promotion_id),
            "contactId": str(a.contact_id),
            "events": [{k: v for k, v in e.items() if v is not None} for _, _, e in found],
        }
