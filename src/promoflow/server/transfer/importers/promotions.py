"""Promotion files (Part B §9.3): ``<createOrUpdate>`` and ``<assign>`` records, applied in document order through
``PromotionService`` and ``AssignmentService`` (so an assignment may name a promotion created earlier in the file).

createOrUpdate, keyed by ``externalPromotionId``:
- unknown → created with Engage's defaults (start today, heading/description = name, one ECOM and one POS
  EXTERNALOFFER channel whose value is the external id when no channel is given) and activated when
  ``published`` (the default);
- a Draft → updated (channels are kept: they are set on creation only) and activated when ``published``;
- a published promotion (Scheduled, Active, or Ended by its end date) → updated as Engage's import does: its
  name, presentation (heading, description: a missing element keeps the current text) and end date
  (``validToDate``; the validity of its assignments follows, A6); its start date (``validFromDate``) only while
  it has no assignment (``PromotionHasAssignments`` otherwise); its channels never (set on creation only: a record
  that gives others is applied all the same, and its reason says the channels were kept); ``published`` false
  does not unpublish it (noted in the reason). ``duplicate`` when nothing changes. A promotion ended by
  deactivation is not changed (``PromotionNotActive``).

assign: the promotion by ``externalPromotionId``, the contact by ``contactId`` or ``externalContactId``; a Draft
promotion is published by its first assignment (Engage: "adding a code sets published"); an
``externalPromotionCodeId`` already given to the same promotion and contact is a ``duplicate``; an optional
``validFromDate`` (not before the promotion's start) moves the assignment's start.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ....kit.timeutil import add_period, end_of_day, local_date, start_of_day
from ....wire.engage import (
    MultichannelPromotionCreate,
    PresentationIn,
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
    InvalidValidityError,
    PromotionCodeInUseError,
    PromotionHasAssignmentsError,
    PromotionNotActiveError,
    PromotionNotFoundError,
)
from ...promotion.rules import status_of
from ...promotion.service import FIRST_DAY, LAST_DAY, PromotionService
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
            presentation=PresentationIn(
                heading=(pres.heading if pres else None) or v.promotion_name,
                description=(pres.description if pres else None) or v.promotion_name,
                link=None,
                image_url=None,
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
        return await self._update_published(conn, rec, row, v)

    async def _update_published(self, conn: AsyncConnection, rec: Record[Any], row: Any,
                                v: PromotionUpsert) -> Outcome:  # fmt: skip
        """Name, presentation and end date; the start date while never assigned; the channels never."""
        key = v.external_promotion_id
        if row.deactivated_at is not None:
            raise PromotionNotActiveError(f"promotion {row.id} was deactivated (Ended); it cannot be changed")
        changes: dict[str, Any] = {}
        if v.promotion_name != row.name:
            changes["name"] = v.promotion_name
        pres = v.presentation
        for field in ("heading", "description"):
            text = getattr(pres, field) if pres else None
            if text is not None and text != getattr(row, field):
                changes[field] = text
        if v.valid_from_date is not None and v.valid_from_date != row.start_date:
            assigned = await conn.scalar(select(exists().where(assignment.c.promotion_id == row.id)))
            if assigned:
                raise PromotionHasAssignmentsError(
                    f"validFromDate cannot change: promotion {row.id} has assignments, whose validity starts at "
                    f"{row.start_date} (its name, presentation and end date can)"
                )
            changes["start_date"] = v.valid_from_date
        if v.valid_to_date is not None and v.valid_to_date != row.end_date:
            changes["end_date"] = v.valid_to_date
        start, end = changes.get("start_date", row.start_date), changes.get("end_date", row.end_date)
        for name, day in (("validFromDate", start), ("validToDate", end)):
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                raise InvalidValidityError(f"{name} must be between {FIRST_DAY} and {LAST_DAY}")
        if end is not None and end < start:
            raise InvalidValidityError(f"validToDate {end} is before the promotion's start {start}")
        notes = []
        if v.redemption_channels and not self._same_channels(row, v):
            notes.append("redemptionChannels kept: they are set when the promotion is created")
        if not v.published:
            notes.append("published=false ignored: a published promotion stays published")
        if not changes:
            return Outcome(rec.index, Verdict.DUPLICATE, rec.line, key,
                           "; ".join([f"promotion {row.id} is unchanged", *notes]))  # fmt: skip
        await conn.execute(
            update(promotion).where(promotion.c.id == row.id).values(updated_at=self.now, **changes)
        )
        if "end_date" in changes:
            await self._rewindow(conn, row, changes["end_date"])
        return Outcome(rec.index, Verdict.APPLIED, rec.line, key,
                       "; ".join([f"updated promotion {row.id}: {', '.join(sorted(changes))}", *notes]))  # fmt: skip

    def _same_channels(self, row: Any, v: PromotionUpsert) -> bool:
        given = {(c.type, c.value_type, (c.value or "").strip(), c.instruction or None)
                 for c in v.redemption_channels or []}  # fmt: skip
        held = {(ch["type"], ch["valueType"], str(ch.get("value") or "").strip(), ch.get("instruction") or None)
                for ch in row.channels}  # fmt: skip
        return given == held

    async def _rewindow(self, conn: AsyncConnection, row: Any, new_end: date) -> None:
        """The promotion's end date moved: every assignment's validity ends at the earlier of the new end (23:59:59
        local) and its own assignedValidity end (A6), as if it had been assigned under the new end date."""
        tz = self.ctx.tz
        new_e = end_of_day(new_end, tz)
        mine = update(assignment).where(
            assignment.c.tenant_id == self.ctx.tenant_id, assignment.c.promotion_id == row.id
        )
        if row.end_date is None or new_end < row.end_date:  # earlier (or an end where there was none)
            await conn.execute(
                mine.where(or_(assignment.c.valid_to.is_(None), assignment.c.valid_to > new_e)).values(
                    valid_to=new_e
                )
            )
            return
        old_e = end_of_day(row.end_date, tz)
        capped = mine.where(assignment.c.valid_to == old_e)  # the ones the old end date cut short
        unit, amount = row.assigned_unit, row.assigned_amount
        if not (unit and amount):
            await conn.execute(capped.values(valid_to=new_e))
            return
        # An assignment's own end depends on its assignment day only, later for later days: walk the days whose
        # own end lies after the old end date (earlier ones were not cut short), until one's reaches the new end.
        first, last = (
            await conn.execute(
                select(func.min(assignment.c.created_at), func.max(assignment.c.created_at)).where(
                    assignment.c.tenant_id == self.ctx.tenant_id,
                    assignment.c.promotion_id == row.id,
                    assignment.c.valid_to == old_e,
                )
            )
        ).one()
        if first is None:
            return
        span = timedelta(days=amount + 1 if unit == "Days" else 31 * amount + 1)
        day = max(local_date(first, tz), row.end_date - span)
        while day <= local_date(last, tz):
            own = end_of_day(add_period(day, unit, amount), tz)
            since = start_of_day(day, tz)
            if own >= new_e:  # this day and every later one: the new end date
                await conn.execute(capped.where(assignment.c.created_at >= since).values(valid_to=new_e))
                return
            if own > old_e:
                until = start_of_day(day + timedelta(days=1), tz)
                await conn.execute(
                    capped.where(assignment.c.created_at >= since, assignment.c.created_at < until).values(
                        valid_to=own
                    )
                )
            day += timedelta(days=1)

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
