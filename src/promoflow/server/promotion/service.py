"""Promotion definitions (A5): create as Draft, read, update while Draft, delete while never assigned,
validity, activate/deactivate, list."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...kit.timeutil import end_of_day, local_date
from ...wire.engage import (
    EARLIEST,
    LATEST,
    MultichannelPromotionCreate,
    PromotionStatus,
    PromotionValidity,
    ReturnPolicy,
)
from ..audit import diff, record
from ..exceptions import BadRequestError, InvalidPayloadError
from ..models import assignment, promotion
from ..tenant.service import TenantContext
from .domain import Promotion, PromotionPage
from .errors import (
    DuplicateRedemptionChannelError,
    ExternalIdInUseError,
    InvalidPromotionIdNoDataError,
    InvalidValidityError,
    PromotionExpiredError,
    PromotionHasAssignmentsError,
    PromotionIncompleteError,
    PromotionNotActiveError,
    PromotionNotDraftError,
    PromotionNotFoundError,
)
from .rules import channel_mask, check_local_value, status_of, validate_channel_value

# The wire's window: every date a promotion names lies in it (in the tenant's zone).
FIRST_DAY = EARLIEST
LAST_DAY = LATEST


@contextlib.asynccontextmanager
async def _external_id_race(external_id: str | None) -> AsyncIterator[None]:
    """The externalId was free when checked, but a concurrent transaction may take it before our write
    (PostgreSQL): the unique constraint decides, and the loser gets the same 409 as a sequential caller."""
    try:
        yield
    except IntegrityError as exc:
        if "external_id" not in str(exc.orig):
            raise
        raise ExternalIdInUseError(f"externalId {external_id!r} is in use") from exc


def _no_nul(*fields: tuple[str, Any]) -> None:
    # PostgreSQL cannot store a NUL character in text; refuse it on every database alike, as bad input.
    for where, text in fields:
        if isinstance(text, str) and "\x00" in text:
            raise InvalidPayloadError(f"{where}: contains a NUL character")


def parse_promotion_id(value: str, error: type[BadRequestError] = InvalidPromotionIdNoDataError) -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise error(f"promotion id {value!r} is not a GUID")
    return guid


def promotion_not_found(ident: object) -> PromotionNotFoundError:
    return PromotionNotFoundError(f"promotion {ident} not found")


def audit_view(row: Any) -> dict[str, Any]:
    """A promotion's definition as the audit log records it (Engage's field names)."""
    return {
        "name": row.name,
        "externalId": row.external_id,
        "startDate": row.start_date,
        "endDate": row.end_date,
        "assignedValidity": (
            {"unit": row.assigned_unit, "amount": row.assigned_amount} if row.assigned_unit else None
        ),
        "heading": row.heading,
        "description": row.description,
        "link": row.link,
        "imageUrl": row.image_url,
        "channels": row.channels,
        "returnPolicy": row.return_policy,
    }


class PromotionService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    # ------------------------------------------------------------------------------------------- helpers

    def _day(self, value: date | datetime | None) -> date | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return local_date(value, self.ctx.tz)
        return value

    def _values(self, body: MultichannelPromotionCreate) -> dict[str, Any]:
        validity = self._validity(body.validity)
        channels = []
        seen = set()
        for i, ch in enumerate(body.redemption_channels):
            if ch.type in seen:
                raise DuplicateRedemptionChannelError(
                    f"redemptionChannels[{i}]: channel {ch.type.value} given twice"
                )
            seen.add(ch.type)
            where = f"redemptionChannels[{i}]"
            value = validate_channel_value(ch.value_type, ch.value, where)
            channels.append(
                {
                    "type": ch.type.value,
                    "valueType": ch.value_type.value,
                    "value": value,
                    "localValues": [
                        {
                            "currency": lv.currency,
                            "amount": str(check_local_value(lv.amount, f"{where}.localValues[{j}]")),
                        }
                        for j, lv in enumerate(ch.local_values or [])
                    ]
                    or None,
                    "instruction": ch.instruction,
                }
            )
        pres = body.presentation
        _no_nul(
            ("name", body.name),
            ("externalId", body.external_id),
            *(
                (f"presentation.{k}", getattr(pres, k))
                for k in ("heading", "description", "link", "image_url")
                if pres
            ),  # fmt: skip
            *((f"redemptionChannels[{i}].value", c["value"]) for i, c in enumerate(channels)),
            *((f"redemptionChannels[{i}].instruction", c["instruction"]) for i, c in enumerate(channels)),
        )
        return {
            "external_id": body.external_id or None,
            "name": body.name,
            **validity,
            "heading": pres.heading if pres else None,
            "description": pres.description if pres else None,
            "link": pres.link if pres else None,
            "image_url": pres.image_url if pres else None,
            "channels": channels,
            "channel_mask": channel_mask(channels),
            "return_policy": (body.return_policy or ReturnPolicy.NONE).value,
        }

    def _validity(self, v: PromotionValidity) -> dict[str, Any]:
        try:
            start = self._day(v.start_date)
            end = self._day(v.end_date)
        except (OverflowError, ValueError) as exc:
            raise InvalidValidityError("validity: a date is out of range") from exc
        assert start is not None
        for name, day in (("startDate", start), ("endDate", end)):
            # An instant inside the wire's window may still fall outside it in the tenant's zone.
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                raise InvalidValidityError(f"validity.{name} must be between {FIRST_DAY} and {LAST_DAY}")
        if end is not None and end < start:
            raise InvalidValidityError("validity.endDate is before validity.startDate")
        return {
            "start_date": start,
            "end_date": end,
            "assigned_unit": v.assigned_validity.unit.value if v.assigned_validity else None,
            "assigned_amount": v.assigned_validity.amount if v.assigned_validity else None,
        }

    async def row(self, conn: AsyncConnection, promotion_id: uuid.UUID, *, for_update: bool = False) -> Any:
        q = select(promotion).where(
            promotion.c.id == promotion_id, promotion.c.tenant_id == self.ctx.tenant_id
        )
        if for_update and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        found = (await conn.execute(q)).first()
        if found is None:
            raise promotion_not_found(promotion_id)
        return found

    async def _row_by_external(self, conn: AsyncConnection, external_id: str) -> Any:
        found = (
            await conn.execute(
                select(promotion).where(
                    promotion.c.external_id == external_id, promotion.c.tenant_id == self.ctx.tenant_id
                )
            )
        ).first()
        if found is None:
            raise PromotionNotFoundError(f"no promotion with externalId {external_id!r}")
        return found

    async def _check_external_free(
        self, conn: AsyncConnection, external_id: str | None, own: uuid.UUID | None
    ) -> None:
        if not external_id:
            return
        q = select(promotion.c.id).where(
            promotion.c.tenant_id == self.ctx.tenant_id, promotion.c.external_id == external_id
        )
        other = await conn.scalar(q)
        if other is not None and other != own:
            raise ExternalIdInUseError(f"externalId {external_id!r} is used by promotion {other}")

    def _require_draft(self, row: Any) -> None:
        if row.activated_at is not None:
            status = status_of(row, self.now, self.ctx.tz).value
            raise PromotionNotDraftError(f"promotion is {status}; only a Draft can be changed")

    async def _audit(self, conn: AsyncConnection, action: str, pid: uuid.UUID,
                     before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:  # fmt: skip
        await record(conn, self.ctx.tenant_id, self.ctx.actor, action, "promotion", pid, before, after,
                     at=self.now, promotion_id=pid)  # fmt: skip

    def _status(self, row: Any) -> str:
        return status_of(row, self.now, self.ctx.tz).value

    # ------------------------------------------------------------------------------------------- commands

    async def create(
        self, conn: AsyncConnection, body: MultichannelPromotionCreate, promotion_id: uuid.UUID | None = None
    ) -> Promotion:
        values = self._values(body)
        await self._check_external_free(conn, values["external_id"], None)
        pid = promotion_id or uuid.uuid4()
        async with _external_id_race(values["external_id"]):
            await conn.execute(
                insert(promotion).values(
                    id=pid, tenant_id=self.ctx.tenant_id, created_at=self.now, updated_at=self.now, **values
                )
            )
        row = await self.row(conn, pid)
        await self._audit(
            conn, "promotion.create", pid, None, {**audit_view(row), "status": self._status(row)}
        )
        return Promotion.of(row)

    async def get(self, conn: AsyncConnection, promotion_id: str) -> Promotion:
        return Promotion.of(await self.row(conn, parse_promotion_id(promotion_id)))

    async def get_by_external(self, conn: AsyncConnection, external_id: str) -> Promotion:
        return Promotion.of(await self._row_by_external(conn, external_id))

    async def update(
        self, conn: AsyncConnection, promotion_id: str, body: MultichannelPromotionCreate
    ) -> Promotion:
        row = await self.row(conn, parse_promotion_id(promotion_id), for_update=True)
        self._require_draft(row)
        values = self._values(body)
        await self._check_external_free(conn, values["external_id"], row.id)
        async with _external_id_race(values["external_id"]):
            await conn.execute(
                update(promotion).where(promotion.c.id == row.id).values(updated_at=self.now, **values)
            )
        return await self._edited(conn, row)

    async def _edited(self, conn: AsyncConnection, old: Any) -> Promotion:
        """The promotion after an edit, with the changed fields recorded (nothing when nothing changed)."""
        new = await self.row(conn, old.id)
        before, after = diff(audit_view(old), audit_view(new))
        if after or before:
            await self._audit(conn, "promotion.update", old.id, before, after)
        return Promotion.of(new)

    async def validity(
        self, conn: AsyncConnection, promotion_id: str | None, external_id: str | None
    ) -> Promotion:
        """The promotion whose validity is asked for (by id or externalId)."""
        row = (
            await self.row(conn, parse_promotion_id(promotion_id))
            if promotion_id
            else await self._row_by_external(conn, external_id or "")
        )
        return Promotion.of(row)

    async def update_validity(
        self, conn: AsyncConnection, promotion_id: str, body: PromotionValidity
    ) -> Promotion:
        row = await self.row(conn, parse_promotion_id(promotion_id), for_update=True)
        self._require_draft(row)
        await conn.execute(
            update(promotion)
            .where(promotion.c.id == row.id)
            .values(updated_at=self.now, **self._validity(body))
        )
        return await self._edited(conn, row)

    async def delete(self, conn: AsyncConnection, promotion_id: str | None, external_id: str | None) -> None:
        row = (
            await self.row(conn, parse_promotion_id(promotion_id), for_update=True)
            if promotion_id
            else await self._row_by_external(conn, external_id or "")
        )
        assigned = await conn.scalar(select(exists().where(assignment.c.promotion_id == row.id)))
        if assigned:
            raise PromotionHasAssignmentsError("promotion has been assigned and cannot be deleted")
        await conn.execute(delete(promotion).where(promotion.c.id == row.id))
        await self._audit(
            conn, "promotion.delete", row.id, {**audit_view(row), "status": self._status(row)}, None
        )

    async def activate(self, conn: AsyncConnection, promotion_id: str) -> Promotion:
        row = await self.row(conn, parse_promotion_id(promotion_id), for_update=True)
        self._require_draft(row)
        if not row.channels:
            raise PromotionIncompleteError("a promotion needs at least one redemption channel")
        if row.end_date is not None and self.now > end_of_day(row.end_date, self.ctx.tz):
            raise PromotionExpiredError("the promotion's end date has passed")
        await conn.execute(
            update(promotion)
            .where(promotion.c.id == row.id)
            .values(activated_at=self.now, updated_at=self.now)
        )
        new = await self.row(conn, row.id)
        await self._audit(conn, "promotion.activate", row.id, {"status": self._status(row)},
                          {"status": self._status(new), "activatedAt": self.now})  # fmt: skip
        return Promotion.of(new)

    async def deactivate(self, conn: AsyncConnection, promotion_id: str) -> Promotion:
        row = await self.row(conn, parse_promotion_id(promotion_id), for_update=True)
        status = status_of(row, self.now, self.ctx.tz)
        if status not in (PromotionStatus.ACTIVE, PromotionStatus.SCHEDULED):
            raise PromotionNotActiveError(f"promotion is {status.value}")
        await conn.execute(
            update(promotion)
            .where(promotion.c.id == row.id)
            .values(deactivated_at=self.now, updated_at=self.now)
        )
        new = await self.row(conn, row.id)
        await self._audit(conn, "promotion.deactivate", row.id, {"status": status.value},
                          {"status": self._status(new), "deactivatedAt": self.now})  # fmt: skip
        return Promotion.of(new)

    async def list(
        self, conn: AsyncConnection, *, offset: int, count: int, status: PromotionStatus | None
    ) -> PromotionPage:
        base = select(promotion).where(promotion.c.tenant_id == self.ctx.tenant_id)
        if status is None:
            total = await conn.scalar(select(func.count()).select_from(base.subquery()))
            rows = (
                await conn.execute(
                    base.order_by(promotion.c.created_at, promotion.c.id).offset(offset).limit(count)
                )
            ).all()
            items = [Promotion.of(r) for r in rows]
        else:
            # Status depends on the clock and the tenant's zone; filter after deriving it.
            rows = (await conn.execute(base.order_by(promotion.c.created_at, promotion.c.id))).all()
            matching = [r for r in rows if status_of(r, self.now, self.ctx.tz) is status]
            total = len(matching)
            items = [Promotion.of(r) for r in matching[offset : offset + count]]
        return PromotionPage(tuple(items), int(total or 0), offset)
