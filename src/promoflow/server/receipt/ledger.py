"""The assignment ledger (extension): every assignment's append-only history, newest last.

Nothing is written twice for it: 'assigned' and 'deleted' come from the assignment row, 'redeemed' (how, where,
when) from the redemption rows, 'linked' from the receipt links, 'shown' from the contact's `promotion_view`
rows that hold the assignment, and 'reactivated' (and any other event a feature records) from `assignment_event`
rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, select
from sqlalchemy.dialects.postgresql import array
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
        found = await self.events_of(conn, [assignment_id])
        if not found:
            raise PromotionNotFoundError(f"promotion {assignment_id} not found")
        return found[0]

    async def events_of(
        self, conn: AsyncConnection, assignment_ids: Sequence[uuid.UUID]
    ) -> list[dict[str, Any]]:
        """The ledgers of several assignments (a page of them: the admin UI's contact card) in one query per
        source, in the order of ``assignment_ids``; an id the tenant does not have is left out."""
        tid = self.ctx.tenant_id
        ids = list(dict.fromkeys(assignment_ids))
        if not ids:
            return []
        rows = {
            a.id: a
            for a in await conn.execute(
                select(assignment).where(assignment.c.id.in_(ids), assignment.c.tenant_id == tid)
            )
        }
        if not rows:
            return []
        found: dict[uuid.UUID, list[tuple[datetime, int, dict[str, Any]]]] = {aid: [] for aid in rows}
        tz = self.ctx.tz

        def add(aid: uuid.UUID, kind: str, at: datetime, **fields: Any) -> None:
            event = {"type": kind, "at": iso(at, tz), **fields}
            found[aid].append((at, _ORDER.get(kind, 9), event))

        for a in rows.values():
            add(a.id, "assigned", a.created_at, via=a.source,
                detail={"validFrom": iso(a.valid_from, tz), "expiresOn": iso(a.valid_to, tz)})  # fmt: skip
        mine = list(rows)
        for r in await conn.execute(
            select(redemption)
            .where(redemption.c.assignment_id.in_(mine))
            .order_by(redemption.c.assignment_id, redemption.c.seq)
        ):
            add(
                r.assignment_id,
                "redeemed",
                r.redeemed_at,
                via=r.via,
                channel=r.channel,
                storeExternalId=r.store_external_id,
                uniqueReceiptId=r.unique_receipt_id,
                detail={"seq": r.seq, "recordedAt": iso(r.created_at, tz)},
            )
        for link in await conn.execute(
            select(receipt_promotion)
            .where(receipt_promotion.c.assignment_id.in_(mine))
            .order_by(receipt_promotion.c.id)
        ):
            add(
                link.assignment_id,
                "linked",
                link.linked_at,
                storeExternalId=link.store_external_id,
                uniqueReceiptId=link.unique_receipt_id,
                detail={
                    "as": link.kind,
                    "redemptionSeq": link.redemption_seq,
                    "receiptDate": iso(link.created_date, tz),
                },
            )
        contacts = {a.contact_id for a in rows.values()}
        views = select(promotion_view).where(
            promotion_view.c.tenant_id == tid,
            promotion_view.c.contact_id.in_(contacts),
            promotion_view.c.at >= min(a.created_at for a in rows.values()),
        )
        if conn.dialect.name == "postgresql":
            views = views.where(
                promotion_view.c.assignment_ids.op("&&", is_comparison=True)(array(mine, type_=Uuid))
            )
        for v in await conn.execute(views.order_by(promotion_view.c.id)):
            for aid in v.assignment_ids:
                held = rows.get(aid)
                if held is not None and held.contact_id == v.contact_id and v.at >= held.created_at:
                    add(aid, "shown", v.at, storeExternalId=v.store_external_id,
                        detail={"count": v.times, "lastAt": iso(v.last_at, tz)})  # fmt: skip
        for ev in await conn.execute(
            select(assignment_event)
            .where(assignment_event.c.assignment_id.in_(mine))
            .order_by(assignment_event.c.id)
        ):
            add(
                ev.assignment_id,
                ev.kind,
                ev.at,
                via=ev.via,
                channel=ev.channel,
                storeExternalId=ev.store_external_id,
                uniqueReceiptId=ev.unique_receipt_id,
                detail=ev.detail,
            )
        out = []
        for aid in ids:
            if aid not in rows:
                continue
            a = rows[aid]
            if a.deleted_at is not None:
                add(aid, "deleted", a.deleted_at)
            events = sorted(found[aid], key=lambda e: (e[0], e[1]))
            out.append({
                "assignmentId": str(a.id),
                "promotionId": str(a.promotion_id),
                "contactId": str(a.contact_id),
                "events": [{k: v for k, v in e.items() if v is not None} for _, _, e in events],
            })  # fmt: skip
        return out
