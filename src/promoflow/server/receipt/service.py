"""Receipt ingest (A12): validate, dedupe by uniqueReceiptId, match the contact or keep the receipt pending, register
the store, then link and redeem its used promotions. The API and the file importer call the same `ingest`;
receipts that were pending are finished by `match` when their contact appears (see `pending`).

Exactly once under concurrency: the receipt row is inserted first with INSERT … ON CONFLICT DO NOTHING on
(tenant_id, unique_receipt_id). Of N concurrent copies one inserts; the others wait on the unique index until that
transaction ends and then insert nothing → "Duplicate", having changed nothing. Only the inserting transaction goes
on to redeem, and the redeem itself is the one conditional UPDATE of `RedemptionService.redeem`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ...wire.engage import Receipt, ReceiptResult
from ..contact.service import ContactService, contact_type_of
from ..exceptions import PromoflowError
from ..models.receipts import receipt, receipt_pending, store
from ..tenant.service import TenantContext
from .linking import ReceiptLinker, Sale
from .locks import lock_keys
from .rules import canonical_key, check_receipt
from .store import DEFAULT_TYPE, StoreService

log = logging.getLogger("promoflow.receipts")

CREATED, DUPLICATE, PENDING = "Created", "Duplicate", "PendingContactMatch"
MATCHED_STATUS, PENDING_STATUS = "matched", "pending"


@dataclass(frozen=True)
class ReceiptOutcome:
    """What became of one receipt: `Created`, `Duplicate` (nothing changed) or `PendingContactMatch` (kept until
    its contact appears). ``warnings`` name the used promotions that could not be applied."""

    unique_receipt_id: str
    status: str
    warnings: list[str] = field(default_factory=list)
    receipt_id: uuid.UUID | None = None

    @property
    def http_status(self) -> int:
        return 202 if self.status == PENDING else 200

    def result(self) -> ReceiptResult:
        return ReceiptResult(
            unique_receipt_id=self.unique_receipt_id, status=self.status, warnings=self.warnings
        )

    def wire(self) -> dict[str, Any]:
        return {"uniqueReceiptId": self.unique_receipt_id, "status": self.status, "warnings": self.warnings}


@dataclass(frozen=True)
class Prepared:
    """A validated receipt: its row (``contact_id`` None, status pending) and canonical match key."""

    row: dict[str, Any]
    key_type: str
    key_value: str
    contact_type: str | None


class ReceiptService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    def prepare(self, body: Receipt, *, via: str, body_as_json: bool = False) -> Prepared:
        """Everything about a receipt that needs no database: validation (a specific 400 when it fails), the
        canonical match key, and the row to insert (contact still unknown). Shared by `ingest` and the quick path
        (which takes ``body`` as JSON text: the same document, serialised by pydantic instead of the driver)."""
        checked = check_receipt(body, self.now)
        key_type, key_value, contact_type = _match_key(body, self.ctx)
        row = {
            "id": uuid.uuid4(),
            "tenant_id": self.ctx.tenant_id,
            "unique_receipt_id": body.unique_receipt_id,
            "contact_id": None,
            "status": PENDING_STATUS,
            "match_key_type": key_type,
            "match_key": key_value,
            "contact_type": contact_type,
            "receipt_number": body.receipt_number,
            "created_date": body.created_date,
            "created_offset": checked.offset_minutes,
            "store_external_id": body.store_external_id,
            "currency": body.currency.upper(),
            "total_gross_price": checked.total,
            "total_discount": checked.discount,
            "kind": checked.kind,
            "original_unique_receipt_id": body.original_unique_receipt_id,
            "body": body.model_dump_json(by_alias=True, exclude_none=True)
            if body_as_json
            else body.model_dump(mode="json", by_alias=True, exclude_none=True),
            "warnings": None,
            "via": via,
            "received_at": self.now,
            "matched_at": None,
        }
        return Prepared(row, key_type, key_value, contact_type)

    async def find_contacts(self, conn: AsyncConnection, bodies: Iterable[Receipt]) -> ContactsFound:
        """The contacts of many receipts, looked up at once (a file's batch): what `ingest` would look up for each
        of them first. A receipt whose key is refused is left out (`ingest` refuses it)."""
        keys = set()
        for body in bodies:
            try:
                keys.add(_match_key(body, self.ctx))
            except PromoflowError:
                continue
        return await ContactService(self.ctx, self.now).find_many_by_key(conn, keys)

    async def ingest(
        self, conn: AsyncConnection, body: Receipt, *, via: str = "api", found: ContactsFound | None = None
    ) -> ReceiptOutcome:
        """Store one receipt and apply it. Raises a `PromoflowError` (400) for an invalid receipt before anything is
        written; a duplicate uniqueReceiptId changes nothing. ``via``: "api" or "file" (kept on the receipt).
        ``found``: its contact as `find_contacts` looked it up earlier in this transaction (instead of a look-up
        of its own; not found there, it is looked up again under the key's lock, as always)."""
        prepared = self.prepare(body, via=via)
        key_type, key_value, contact_type = prepared.key_type, prepared.key_value, prepared.contact_type
        contacts = ContactService(self.ctx, self.now)
        key = (key_type, key_value, contact_type)
        if found is not None and key in found:
            contact_id = found[key]
        else:
            contact_id = await contacts.find_by_key(conn, key_type, key_value, contact_type)
        if contact_id is None:
            # About to keep it pending: lock the key against a contact being created with it right now, and look
            # again (see pending.lock_keys).
            await lock_keys(conn, self.ctx.tenant_id, [(key_type, key_value)])
            contact_id = await contacts.find_by_key(conn, key_type, key_value, contact_type)
        values = prepared.row
        receipt_id = values["id"]
        if contact_id is not None:
            values.update(contact_id=contact_id, status=MATCHED_STATUS, matched_at=self.now)
        inserted = (await conn.execute(_insert_receipt(conn), values)).first()
        if inserted is None:
            return ReceiptOutcome(body.unique_receipt_id, DUPLICATE)
        store_type = await StoreService(self.ctx, self.now).ensure(conn, body.store_external_id)
        if contact_id is None:
            await conn.execute(
                insert(receipt_pending).values(
                    receipt_id=receipt_id,
                    tenant_id=self.ctx.tenant_id,
                    key_type=key_type,
                    key_value=key_value,
                    contact_type=contact_type,
                    created_at=self.now,
                )
            )
            log.info(
                "receipt.pending tenant=%s receipt=%s key_type=%s",
                self.ctx.name,
                body.unique_receipt_id,
                key_type,
            )
            return ReceiptOutcome(body.unique_receipt_id, PENDING, receipt_id=receipt_id)
        sale = _sale(values, contact_id, store_type)
        warnings = await self._apply(conn, sale, [])
        return ReceiptOutcome(body.unique_receipt_id, CREATED, warnings, receipt_id)

    async def match(self, conn: AsyncConnection, receipt_id: uuid.UUID, contact_id: uuid.UUID) -> bool:
        """Give a pending receipt its contact and apply it (used promotions, return), as ingest would have. False
        when it is no longer pending (matched by a concurrent transaction)."""
        row = (
            await conn.execute(
                update(receipt)
                .where(
                    receipt.c.id == receipt_id,
                    receipt.c.tenant_id == self.ctx.tenant_id,
                    receipt.c.status == PENDING_STATUS,
                )
                .values(contact_id=contact_id, status=MATCHED_STATUS, matched_at=self.now)
                .returning(*receipt.c)
            )
        ).first()
        if row is None:
            return False
        await conn.execute(delete(receipt_pending).where(receipt_pending.c.receipt_id == receipt_id))
        store_type = await conn.scalar(
            select(store.c.type).where(
                store.c.tenant_id == self.ctx.tenant_id, store.c.external_id == row.store_external_id
            )
        )
        sale = _sale(row._asdict(), contact_id, str(store_type or DEFAULT_TYPE))
        warnings = await self._apply(conn, sale, list(row.warnings or ()))
        log.info(
            "receipt.matched tenant=%s receipt=%s warnings=%d",
            self.ctx.name,
            row.unique_receipt_id,
            len(warnings),
        )
        return True

    async def _apply(self, conn: AsyncConnection, sale: Sale, earlier: list[str]) -> list[str]:
        warnings = await ReceiptLinker(self.ctx, self.now).apply(conn, sale)
        if warnings:
            await conn.execute(
                update(receipt).where(receipt.c.id == sale.receipt_id).values(warnings=earlier + warnings)
            )
        return warnings


ContactsFound = dict[tuple[str, str, str | None], uuid.UUID | None]
"""Contacts by (match key type, normalised key, contact type), as `ReceiptService.find_contacts` found them."""


def _match_key(body: Receipt, ctx: TenantContext) -> tuple[str, str, str | None]:
    """What a receipt's contact is looked up by: (canonical matchKeyType, normalised matchKey, contact type)."""
    key_type, key_value = canonical_key(body.contact.match_key_type, body.contact.match_key, ctx)
    contact_type = contact_type_of(body.contact.contact_type) if body.contact.contact_type else None
    return key_type, key_value, contact_type


_INSERTS: dict[str, Any] = {}


def _insert_receipt(conn: AsyncConnection) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, built once per dialect: ingest is a hot path, and building
    a 22-column statement per request costs more than running it."""
    name = conn.dialect.name
    stmt = _INSERTS.get(name)
    if stmt is None:
        base = postgresql.insert(receipt) if name == "postgresql" else sqlite.insert(receipt)
        stmt = _INSERTS[name] = base.on_conflict_do_nothing().returning(receipt.c.id)
    return stmt


def _sale(values: dict[str, Any], contact_id: uuid.UUID, store_type: str) -> Sale:
    return Sale(
        receipt_id=values["id"],
        unique_receipt_id=values["unique_receipt_id"],
        contact_id=contact_id,
        created_date=values["created_date"],
        store_external_id=values["store_external_id"],
        store_type=store_type,
        currency=values["currency"],
        total=values["total_gross_price"],
        discount=values["total_discount"],
        kind=values["kind"],
        original_unique_receipt_id=values["original_unique_receipt_id"],
        body=values["body"],
    )
