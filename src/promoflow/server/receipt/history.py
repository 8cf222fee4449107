"""Contact history: `GET /api/v2/contacts/{contactId}/transactions` (Engage's `PagedResultOfTransactionItem`),
newest sale first. Pending receipts have no contact yet and appear once matched."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.present import without_none
from ...kit.timeutil import iso
from ..contact.errors import ContactNotFoundError
from ..models import contact
from ..models.receipts import receipt, receipt_promotion, store
from ..tenant.service import TenantContext


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class HistoryService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def transactions(
        self, conn: AsyncConnection, contact_id: uuid.UUID, *, offset: int, count: int
    ) -> dict[str, Any]:
        tid = self.ctx.tenant_id
        mine = and_(receipt.c.tenant_id == tid, receipt.c.contact_id == contact_id)
        total = int(await conn.scalar(select(func.count()).select_from(receipt).where(mine)) or 0)
        if total == 0:
            found = await conn.scalar(
                select(contact.c.id).where(contact.c.id == contact_id, contact.c.tenant_id == tid)
            )
            if found is None:
                raise ContactNotFoundError(f"contact {contact_id} not found")
        rows = (
            await conn.execute(
                select(receipt, store.c.name.label("store_name"), store.c.type.label("store_type"))
                .outerjoin(
                    store, and_(store.c.tenant_id == tid, store.c.external_id == receipt.c.store_external_id)
                )
                .where(mine)
                .order_by(receipt.c.created_date.desc(), receipt.c.id.desc())
                .offset(offset)
                .limit(count)
            )
        ).all()
        links: dict[uuid.UUID, list[dict[str, str]]] = defaultdict(list)
        if rows:
            for link in await conn.execute(
                select(
                    receipt_promotion.c.receipt_id,
                    receipt_promotion.c.assignment_id,
                    receipt_promotion.c.promotion_id,
                    receipt_promotion.c.kind,
                )
                .where(receipt_promotion.c.receipt_id.in_([r.id for r in rows]))
                .order_by(receipt_promotion.c.id)
            ):
                links[link.receipt_id].append(
                    {
                        "assignmentId": str(link.assignment_id),
                        "promotionId": str(link.promotion_id),
                        "kind": link.kind,
                    }
                )
        items = [self._item(r, links.get(r.id, [])) for r in rows]
        return {"items": items, "totalCount": total, "offset": offset, "count": len(items)}

    def _item(self, row: Any, links: list[dict[str, str]]) -> dict[str, Any]:
        body = row.body
        rate = body.get("exchangeRateToGroupCurrency")
        total = row.total_gross_price
        group_total = total * Decimal(str(rate)) if rate is not None else total
        quantity = sum((abs(Decimal(str(i.get("quantity", 0)))) for i in body.get("items", ())), Decimal(0))
        local = timezone(timedelta(minutes=row.created_offset))
        # Absent optional fields (transactionNumber, storeName, storeType, originalUniqueReceiptId) are left out.
        return without_none({
            "id": str(row.id),
            "externalId": row.unique_receipt_id,
            "uniqueReceiptId": row.unique_receipt_id,
            "transactionNumber": row.receipt_number,
            "createdDate": iso(row.created_date.astimezone(local)),
            "storeExternalId": row.store_external_id,
            "storeName": row.store_name,
            "storeType": row.store_type,
            "type": row.kind,
            "numberOfItems": number(quantity),
            "netPriceSum": number(group_total),
            "localNetPriceSum": number(total),
            "localCurrency": row.currency,
            "groupCurrency": self.ctx.currency,
            "totalGrossPrice": number(total),
            "totalDiscount": number(row.total_discount),
            "originalUniqueReceiptId": row.original_unique_receipt_id,
            "lineItems": body.get("items", []),
            "paymentMethods": body.get("paymentMethods", []),
            "usedPromotions": links,
            "warnings": list(row.warnings or ()),
            "receivedOn": iso(row.received_at, self.ctx.tz),
        })  # fmt: skip
