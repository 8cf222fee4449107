"""Transaction files (A12/A13): each ``<transaction>`` is a receipt, ingested by ``ReceiptService`` exactly as
``POST /api/v2/receipts`` is: same validation, dedupe by ``uniqueReceiptId``, pending contact match, and
``usedPromotions`` linking and redeeming through the one redemption code path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ....wire.engage import Receipt
from ....wire.xml import Record, Verdict
from ...receipt.service import DUPLICATE, PENDING, ContactsFound, ReceiptService
from ...tenant.service import TenantContext
from ..results import Outcome
from ._common import each_checked_first


class TransactionApplier:
    def __init__(self, tenant: TenantContext, imp: Any, now: datetime) -> None:
        self.service = ReceiptService(tenant, now)

    async def apply(self, conn: AsyncConnection, records: list[Record[Receipt]]) -> list[Outcome]:
        # The batch's contacts in one look-up per kind of key, not one per receipt. Receipts create no contacts,
        # so what it finds holds for the whole batch; a receipt it finds no contact for is looked up again under
        # its key's lock (ingest).
        found = await self.service.find_contacts(conn, [r.value for r in records])

        async def one(conn: AsyncConnection, rec: Record[Receipt]) -> Outcome:
            return await self._one(conn, rec, found)

        # ingest refuses an invalid receipt before it writes anything (ReceiptService.ingest's contract).
        return await each_checked_first(conn, records, lambda r: r.unique_receipt_id, one)

    async def _one(self, conn: AsyncConnection, rec: Record[Receipt], found: ContactsFound) -> Outcome:
        out = await self.service.ingest(conn, rec.value, via="file", found=found)
        key = out.unique_receipt_id
        if out.status == DUPLICATE:
            return Outcome(rec.index, Verdict.DUPLICATE, rec.line, key)
        notes = ([PENDING] if out.status == PENDING else []) + list(out.warnings)
        return Outcome(rec.index, Verdict.APPLIED, rec.line, key, "; ".join(notes) or None)
