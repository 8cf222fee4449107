"""Promotion files (Part B §9.3): ``<createOrUpdate>`` and ``<assign>`` records, applied in document order through
``PromotionService`` and ``AssignmentService`` (so an assignment may name a promotion created earlier in the file).

createOrUpdate, keyed by ``externalPromotionId``:
- unknown → created with Engage's defaults (start today, heading/description = name, one ECOM and one POS
  EXTERNALOFFER channel whose value is the external id when no channel is given) and activated when
  ``published`` (the default);
- a Draft → updated (channels are kept: they are set on creation only) and activated when ``published``;
- a published promotion → ``duplicate`` when the record matches it, otherwise ``invalid`` (promoflow changes a
  promotion only while it is a Draft, as the API does).

assign: the promotion by ``externalPromotionId``, the contact by ``contactId`` or ``externalContactId``; a Draft
promotion is published by its first assignment (Engage: "adding a code sets published"); an
``externalPromotionCodeId`` already given to the same promotion and contact is a ``duplicate``; an optional
``validFromDate`` (not before the promotion's start) moves the assignment's start.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ....kit.timeutil import local_date, start_of_day
from ....wire.engage import (
    MultichannelPromotionCreate,
    Presentation,
    PromotionStatus,
    PromotionValidity,
    RedemptionChannelIn,
)
from ....wire.xml import PromotionAssignment, PromotionUpsert, Record, Verdict
from ...contact.errors import ContactNotFoundError
from ...contact.service import ContactService
from ...models import assignment, promotion
from ...promotion.assignment import AssignmentService
from ...promotion.errors import (
    InvalidValidFromDateError,
    PromotionCodeInUseError,
    PromotionNotDraftError,
    PromotionNotFoundError,
)
from ...promotion.rules import status_of
from ...promotion.service import PromotionService
from ...tenant.service import TenantContext
from ..results import Outcome
from ._common import each_in_savepoint


def _key(value: PromotionUpsert | PromotionAssignment) -> str | None:
    if isinstance(value, PromotionAssignment):
        return value.external_promotion_code_id or value.external_promotion_id
    return value.external_promotion_id


class PromotionApplier:
    def __init__(self, tenant: TenantContext, imp: Any, now: datetime) -> None:
        self.ctx = tenant
        self.now = now
        self.promotions = PromotionService(tenant, now)
        self.assignments = AssignmentService(tenant, now)

    async def apply(self, conn: AsyncConnection, records: list[Record[Any]]) -> list[Outcome]:
        return await each_in_savepoint(conn, records, _key, self._one)

    async def _one(self, conn: AsyncConnection, rec: Record[Any]) -> Outcome:
        if isinstance(rec.value, PromotionAssignment):
            return await self._assign(conn, rec, rec.value)
        return await self._upsert(conn, rec, rec.value)

    async def _by_external(self, conn: AsyncConnection, external_id: str) -> Any:
        return (
            await conn.execute(
                select(promotion).where(
                    promotion.c.tenant_id == self.ctx.tenant_id, promotion.c.external_id == external_id
                )
            )
        ).first()

    def _body(self, v: PromotionUpsert, channels: list[RedemptionChannelIn]) -> MultichannelPromotionCreate:
        pres = v.presentation
        return MultichannelPromotionCreate(
            name=v.promotion_name,
            external_id=v.external_promotion_id,
            validity=PromotionValidity(
                start_date=v.valid_from_date or local_date(self.now, self.ctx.tz), end_date=v.valid_to_date
            ),
            presentation=Presentation(
                heading=(pres.heading if pres else None) or v.promotion_name,
                description=(pres.description if pres else None) or v.promotion_name,
            ),
            redemption_channels=channels,
        )

    async def _upsert(self, conn: AsyncConnection, rec: Record[Any], v: PromotionUpsert) -> Outcome:
        key = v.external_promotion_id
        row = await self._by_external(conn, key)
        if row is None:
            channels = [
                RedemptionChannelIn(
                    type=c.type, value_type=c.value_type, value=c.value, instruction=c.instruction
                )
                for c in v.redemption_channels or []
            ] or [
                RedemptionChannelIn(type=t, value_type="EXTERNALOFFER", value=key)  # type: ignore[arg-type]
                for t in ("ECOM", "POS")
            ]
            out = await self.promotions.create(conn, self._body(v, channels))
            if v.published:
                await self.promotions.activate(conn, str(out.id))
            return Outcome(rec.index, Verdict.APPLIED, rec.line, key, f"created promotion {out.id}")
        if row.activated_at is None:
            kept = [RedemptionChannelIn.model_validate(ch) for ch in row.channels]
            await self.promotions.update(conn, str(row.id), self._body(v, kept))
            if v.published:
                await self.promotions.activate(conn, str(row.id))
            return Outcome(rec.index, Verdict.APPLIED, rec.line, key, f"updated promotion {row.id}")
        if self._matches(row, v):
            return Outcome(rec.index, Verdict.DUPLICATE, rec.line, key, f"promotion {row.id} is unchanged")
        status = status_of(row, self.now, self.ctx.tz).value
        raise PromotionNotDraftError(f"promotion {row.id} is {status}; only a Draft can be changed")

    def _matches(self, row: Any, v: PromotionUpsert) -> bool:
        pres = v.presentation
        return (
            row.name == v.promotion_name
            and (v.valid_from_date is None or row.start_date == v.valid_from_date)
            and row.end_date == v.valid_to_date
            and (pres is None or pres.heading is None or row.heading == pres.heading)
            and (pres is None or pres.description is None or row.description == pres.description)
        )

    async def _assign(self, conn: AsyncConnection, rec: Record[Any], v: PromotionAssignment) -> Outcome:
        key = _key(v)
        row = await self._by_external(conn, v.external_promotion_id)
        if row is None:
            raise PromotionNotFoundError(f"no promotion with externalPromotionId {v.external_promotion_id!r}")  # fmt: skip
        contact_id = await self._contact(conn, v)
        if v.external_promotion_code_id:
            held = (
                await conn.execute(
                    select(assignment.c.id, assignment.c.promotion_id, assignment.c.contact_id).where(
                        assignment.c.tenant_id == self.ctx.tenant_id,
                        assignment.c.external_code_id == v.external_promotion_code_id,
                    )
                )
            ).first()
            if held is not None:
                if held.promotion_id == row.id and held.contact_id == contact_id:
                    return Outcome(rec.index, Verdict.DUPLICATE, rec.line, key, f"couponId {held.id}",
                                   {"contactId": str(contact_id)})  # fmt: skip
                raise PromotionCodeInUseError(f"externalPromotionCodeId {v.external_promotion_code_id!r} is used by coupon "
                               f"{held.id}")  # fmt: skip
        start = start_of_day(row.start_date, self.ctx.tz)
        valid_from = start_of_day(v.valid_from_date, self.ctx.tz) if v.valid_from_date else None
        if valid_from is not None and valid_from < start:
            raise InvalidValidFromDateError(f"validFromDate {v.valid_from_date} is before the promotion's start {row.start_date}")  # fmt: skip
        if status_of(row, self.now, self.ctx.tz) is PromotionStatus.DRAFT:
            await self.promotions.activate(conn, str(row.id))
        item = await self.assignments.assign(
            conn, contact_id, row.id, source="file", external_code_id=v.external_promotion_code_id
        )
        if valid_from is not None:
            await conn.execute(
                update(assignment)
                .where(assignment.c.id == item.id, assignment.c.valid_from < valid_from)
                .values(valid_from=valid_from)
            )
        return Outcome(rec.index, Verdict.APPLIED, rec.line, key, f"couponId {item.id}",
                       {"contactId": str(contact_id)})  # fmt: skip

    async def _contact(self, conn: AsyncConnection, v: PromotionAssignment) -> uuid.UUID:
        contacts = ContactService(self.ctx, self.now)
        if v.contact_id:
            guid = uuid.UUID(v.contact_id)
            if await contacts.exists(conn, guid):
                return guid
            raise ContactNotFoundError(f"contact {v.contact_id} not found")
        found = await contacts.find_by_key(conn, "externalId", v.external_contact_id or "")
        if found is None:
            raise ContactNotFoundError(f"no contact with externalId {v.external_contact_id!r}")
        return found
