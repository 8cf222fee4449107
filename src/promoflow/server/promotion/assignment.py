"""Assignments (A6), fetching (A7), redeeming (A8) and reactivation (A10).

``RedemptionService.redeem`` is the one redemption code path: the API endpoints, receipts and file imports all
call it. Exactly-once rests on one conditional write (``UPDATE … WHERE redeemed_at IS NULL``): whichever
transaction gets there first changes the row; every other sees no row to change and answers 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...kit.timeutil import iso
from ...wire.engage import ChannelType, PromotionStatus
from ..contact.errors import ContactNotFoundError
from ..dialect import insert_ignore, unindexed
from ..models import assignment, assignment_event, contact, promotion, redemption
from ..tenant.service import TenantContext
from .errors import (
    AmbiguousPromotionIdError,
    InvalidPromotionIdNoDataError,
    InvalidRedeemedOnError,
    PromotionAlreadyRedeemedError,
    PromotionExpiredError,
    PromotionNotActiveError,
    PromotionNotAssociatedWithContactError,
    PromotionNotFoundError,
    PromotionNotRedeemableError,
    PromotionNotRedeemedError,
    PromotionNotValidForRedemptionChannelError,
    PromotionNotYetValidError,
    ReactivationLimitExceededError,
)
from .rules import CHANNEL_BITS, assignment_window, read_channels, status_of
from .service import promotion_not_found

# A client clock a little ahead of ours is not "the future".
CLOCK_SKEW = timedelta(minutes=5)

_ITEM_COLUMNS = (
    assignment.c.id,
    assignment.c.promotion_id,
    assignment.c.valid_from,
    assignment.c.valid_to,
    assignment.c.redeemed_at,
    promotion.c.external_id,
    promotion.c.name,
    promotion.c.heading,
    promotion.c.description,
    promotion.c.image_url,
    promotion.c.link,
    promotion.c.channels,
)


def promotion_part(row: Any, currency: str) -> dict[str, Any]:
    """What every assignment of one promotion shows alike (once activated, changed only by a promotion file's
    createOrUpdate: name and presentation)."""
    return {
        "promotionId": str(row.promotion_id),
        "externalId": row.external_id,
        "type": "Multichannel",
        "name": row.name,
        "heading": row.heading,
        "description": row.description,
        "imageUrl": row.image_url,
        "link": row.link,
        "redemptionChannels": read_channels(row.channels, currency),
    }


def render_item(
    assignment_id: uuid.UUID,
    part: dict[str, Any],
    valid_from: datetime,
    valid_to: datetime | None,
    redeemed_at: datetime | None,
    tz: Any,
    v3: bool,
) -> dict[str, Any]:
    """One `ApiPromotionModel` item; ``id`` is the assignment id. v3 items also carry ``assignmentId`` (the
    same value) and the extension ``validFrom``; v2 items carry exactly Engage's fields, as Engage clients
    may parse them strictly (the published Python client raises on a field it does not know)."""
    out: dict[str, Any] = {"id": str(assignment_id)}
    if v3:
        out["assignmentId"] = out["id"]
    out.update(part)
    out["expiresOn"] = iso(valid_to, tz)
    if v3:
        out["validFrom"] = iso(valid_from, tz)
    out["redeemed"] = redeemed_at is not None
    out["redeemedOn"] = iso(redeemed_at, tz)
    return out


def item_out(row: Any, ctx: TenantContext, *, v3: bool = False) -> dict[str, Any]:
    return render_item(
        row.id, promotion_part(row, ctx.currency), row.valid_from, row.valid_to, row.redeemed_at, ctx.tz, v3
    )


def parse_assignment_id(value: str) -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise InvalidPromotionIdNoDataError(f"promotion id {value!r} is not a GUID")
    return guid


def _redeemable(tenant_id: Any, assignment_id: Any, at: Any, bit: Any) -> list[Any]:
    """The conditions of the one conditional write that redeems an assignment (exactly once): this tenant's,
    not redeemed, not deleted, valid at ``at``, and of a promotion redeemable in the channel ``bit``."""
    channel_ok = (
        select(promotion.c.id)
        .where(
            promotion.c.id == assignment.c.promotion_id,
            or_(promotion.c.channel_mask == 0, promotion.c.channel_mask.op("&")(bit) != 0),
        )
        .exists()
    )
    return [
        assignment.c.id == assignment_id,
        assignment.c.tenant_id == tenant_id,
        assignment.c.redeemed_at.is_(None),
        assignment.c.deleted_at.is_(None),
        assignment.c.valid_from <= at,
        or_(assignment.c.valid_to.is_(None), assignment.c.valid_to >= at),
        channel_ok,
    ]


def _redeemed(at: Any, channel: Any, store: Any, receipt: Any, via: str) -> dict[str, Any]:
    """What the write sets."""
    return {
        "redeemed_at": at,
        "redeemed_channel": channel,
        "redeemed_store": store,
        "redeemed_receipt_id": receipt,
        "redeemed_via": via,
        "redemption_count": assignment.c.redemption_count + 1,
    }


@dataclass(frozen=True)
class RedeemLine:
    """One redemption of `RedemptionService.redeem_many_exclusive`."""

    assignment_id: uuid.UUID
    channel: ChannelType
    at: datetime
    contact_id: uuid.UUID | None = None
    store_external_id: str | None = None
    unique_receipt_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Redeemed:
    """The outcome of one successful redemption."""

    item: dict[str, Any]
    assignment_id: uuid.UUID
    contact_id: uuid.UUID
    redeemed_at: datetime
    seq: int


class AssignmentService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def _promotion_for_assign(self, conn: AsyncConnection, promotion_id: uuid.UUID) -> Any:
        row = (
            await conn.execute(
                select(promotion).where(promotion.c.id == promotion_id, promotion.c.tenant_id == self.ctx.tenant_id)
            )
        ).first()
        if row is None:
            raise promotion_not_found(promotion_id)
        status = status_of(row, self.now, self.ctx.tz)
        if status is PromotionStatus.DRAFT or (status is PromotionStatus.ENDED and row.deactivated_at is not None):
            raise PromotionNotActiveError(f"promotion is {status.value}; only Scheduled or Active ones are assigned")  # fmt: skip
        if status is PromotionStatus.ENDED:
            raise PromotionExpiredError("the promotion's end date has passed")
        return row

    def _window(self, promo: Any) -> tuple[datetime, datetime | None]:
        return assignment_window(
            promo.start_date, promo.end_date, promo.assigned_unit, promo.assigned_amount, self.now, self.ctx.tz
        )

    async def assign(
        self,
        conn: AsyncConnection,
        contact_id: uuid.UUID,
        promotion_id: uuid.UUID,
        *,
        source: str = "api",
        v3: bool = False,
        external_code_id: str | None = None,
    ) -> dict[str, Any]:
        promo = await self._promotion_for_assign(conn, promotion_id)
        found = await conn.scalar(
            select(contact.c.id).where(contact.c.id == contact_id, contact.c.tenant_id == self.ctx.tenant_id)
        )
        if found is None:
            raise ContactNotFoundError(f"contact {contact_id} not found")
        valid_from, valid_to = self._window(promo)
        if valid_to is not None and valid_to < self.now:
            raise PromotionExpiredError("the assignment would already be expired")
        new_id = uuid.uuid4()
        await conn.execute(
            insert(assignment).values(
                id=new_id,
                tenant_id=self.ctx.tenant_id,
                promotion_id=promo.id,
                contact_id=contact_id,
                valid_from=valid_from,
                valid_to=valid_to,
                source=source,
                external_code_id=external_code_id,
                created_at=self.now,
            )
        )
        return await self.item(conn, new_id, v3=v3)

    async def assign_many(
        self, conn: AsyncConnection, promotion_id: uuid.UUID, contact_ids: list[uuid.UUID], batch_ref: str
    ) -> tuple[int, set[uuid.UUID]]:
        """Assign one promotion to many contacts of this tenant; a contact already assigned in this batch is
        skipped, so re-running a batch never duplicates. Returns how many were new, and which of the given ids
        are contacts of this tenant (the others were not assigned)."""
        promo = await self._promotion_for_assign(conn, promotion_id)
        if not contact_ids:
            return 0, set()
        existing = set(
            (
                await conn.execute(
                    select(contact.c.id).where(
                        unindexed(conn, contact.c.tenant_id) == self.ctx.tenant_id, contact.c.id.in_(contact_ids)
                    )
                )
            ).scalars()
        )
        if not existing:
            return 0, existing
        valid_from, valid_to = self._window(promo)
        rows = [
            {
                "id": uuid.uuid4(),
                "tenant_id": self.ctx.tenant_id,
                "promotion_id": promo.id,
                "contact_id": cid,
                "valid_from": valid_from,
                "valid_to": valid_to,
                "source": "bulk",
                "batch_ref": batch_ref,
                "created_at": self.now,
            }
            for cid in existing
        ]
        result = await conn.execute(insert_ignore(conn, assignment, rows).returning(assignment.c.id))
        return len(result.all()), existing

    async def item(self, conn: AsyncConnection, assignment_id: uuid.UUID, *, v3: bool = False) -> dict[str, Any]:
        row = (
            await conn.execute(
                select(*_ITEM_COLUMNS)
                .join(promotion, promotion.c.id == assignment.c.promotion_id)
                .where(assignment.c.id == assignment_id, assignment.c.tenant_id == self.ctx.tenant_id)
            )
        ).first()
        if row is None:
            raise PromotionNotFoundError(f"promotion {assignment_id} not found")
        return item_out(row, self.ctx, v3=v3)

    async def list_for_contact(
        self, conn: AsyncConnection, contact_id: uuid.UUID, channel: ChannelType | None, *,
        include_redeemed: bool = False,
    ) -> list[Any]:  # fmt: skip
        """The contact's assignments valid now, of non-Draft promotions, not redeemed (A7), as rows for
        `item_out`."""
        conds = [
            assignment.c.contact_id == contact_id,
            assignment.c.tenant_id == self.ctx.tenant_id,
            assignment.c.deleted_at.is_(None),
            promotion.c.activated_at.is_not(None),
        ]
        if not include_redeemed:
            conds += [
                assignment.c.redeemed_at.is_(None),
                assignment.c.valid_from <= self.now,
                or_(assignment.c.valid_to.is_(None), assignment.c.valid_to >= self.now),
            ]
        if channel is not None:
            conds.append(promotion.c.channel_mask.op("&")(CHANNEL_BITS[channel]) != 0)
        rows = (
            await conn.execute(
                select(*_ITEM_COLUMNS)
                .join(promotion, promotion.c.id == assignment.c.promotion_id)
                .where(and_(*conds))
                .order_by(assignment.c.created_at, assignment.c.id)
            )
        ).all()
        if not rows:
            found = await conn.scalar(
                select(contact.c.id).where(contact.c.id == contact_id, contact.c.tenant_id == self.ctx.tenant_id)
            )
            if found is None:
                raise ContactNotFoundError(f"contact {contact_id} not found")
        return list(rows)


class RedemptionService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def resolve_for_contact(self, conn: AsyncConnection, contact_id: uuid.UUID, ident: uuid.UUID) -> uuid.UUID:
        """On the contact-scoped path, a template id names the contact's one redeemable assignment of it."""
        owner = await conn.scalar(
            select(assignment.c.contact_id).where(
                assignment.c.id == ident, assignment.c.tenant_id == self.ctx.tenant_id
            )
        )
        if owner is not None:
            if owner != contact_id:
                raise PromotionNotAssociatedWithContactError("the promotion is not assigned to this contact")  # fmt: skip
            return ident
        candidates = (
            await conn.execute(
                select(assignment.c.id)
                .where(
                    assignment.c.promotion_id == ident,
                    assignment.c.contact_id == contact_id,
                    assignment.c.tenant_id == self.ctx.tenant_id,
                    assignment.c.redeemed_at.is_(None),
                    assignment.c.deleted_at.is_(None),
                    assignment.c.valid_from <= self.now,
                    or_(assignment.c.valid_to.is_(None), assignment.c.valid_to >= self.now),
                )
                .order_by(assignment.c.created_at, assignment.c.id)
                .limit(2)
            )
        ).scalars().all()
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AmbiguousPromotionIdError("the contact holds several redeemable assignments of this promotion; redeem by the "
                           "assignment id")  # fmt: skip
        template = await conn.scalar(
            select(promotion.c.id).where(promotion.c.id == ident, promotion.c.tenant_id == self.ctx.tenant_id)
        )
        if template is None:
            raise PromotionNotFoundError(f"promotion {ident} not found")
        raise PromotionNotAssociatedWithContactError("the promotion is not assigned to this contact")

    async def redeem(
        self,
        conn: AsyncConnection,
        assignment_id: uuid.UUID,
        channel: ChannelType,
        *,
        contact_id: uuid.UUID | None = None,
        via: str = "api",
        redeemed_on: datetime | None = None,
        store_external_id: str | None = None,
        unique_receipt_id: str | None = None,
        idempotency_key: str | None = None,
        v3: bool = False,
    ) -> Redeemed:
        try:
            # An offset such as +14:00 on year 1 (or 9999) has no UTC instant: bad input, not a server error.
            at = redeemed_on.astimezone(UTC) if redeemed_on is not None else self.now
        except (OverflowError, ValueError) as exc:
            raise InvalidRedeemedOnError("redeemedOn is out of range") from exc
        if at > self.now + CLOCK_SKEW:
            raise InvalidRedeemedOnError("redeemedOn is in the future")
        conds = _redeemable(self.ctx.tenant_id, assignment_id, at, CHANNEL_BITS[channel])
        if contact_id is not None:
            conds.append(assignment.c.contact_id == contact_id)
        won = (
            await conn.execute(
                update(assignment)
                .where(and_(*conds))
                .values(_redeemed(at, channel.value, store_external_id, unique_receipt_id, via))
                .returning(assignment.c.redemption_count, assignment.c.contact_id)
            )
        ).first()
        if won is None:
            await self._explain_refusal(conn, assignment_id, channel, at, contact_id)
            raise AssertionError("unreachable")  # _explain_refusal always raises
        line = RedeemLine(assignment_id, channel, at, contact_id, store_external_id, unique_receipt_id, idempotency_key)
        await conn.execute(insert(redemption).values(self._redemption_row(line, won.redemption_count, via)))
        item = await AssignmentService(self.ctx, self.now).item(conn, assignment_id, v3=v3)
        return Redeemed(item, assignment_id, won.contact_id, at, won.redemption_count)

    def _redemption_row(self, line: RedeemLine, seq: int, via: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "tenant_id": self.ctx.tenant_id,
            "assignment_id": line.assignment_id,
            "seq": seq,
            "redeemed_at": line.at,
            "channel": line.channel.value,
            "store_external_id": line.store_external_id,
            "unique_receipt_id": line.unique_receipt_id,
            "via": via,
            "idempotency_key": line.idempotency_key,
            "created_at": self.now,
        }

    async def redeem_many_exclusive(self, conn: AsyncConnection, lines: list[RedeemLine], *, via: str) -> set[uuid.UUID]:
        """Redeem many assignments at once, each with `redeem`'s own conditional write (the same conditions, one
        prepared statement run for every line), and the redemption rows of the ones it redeemed. Answers the
        assignments redeemed; a line not among them changed nothing, and `redeem` explains why.

        Only where the transaction excludes every other writer (SQLite: its write transactions begin IMMEDIATE),
        because which lines won is read off the redemption counts before and after the write — on PostgreSQL
        another transaction could redeem one of these in between, so it has its own set-based statement. No
        assignment may appear twice in ``lines``; each ``at`` is UTC and not in the future (as `redeem` checks)."""
        if conn.dialect.name != "sqlite":
            raise RuntimeError("redeem_many_exclusive needs a transaction that excludes other writers (SQLite)")
        if not lines:
            return set()
        ids = [line.assignment_id for line in lines]
        counts = (
            select(assignment.c.id, assignment.c.redemption_count)
            .where(unindexed(conn, assignment.c.tenant_id) == self.ctx.tenant_id, assignment.c.id.in_(ids))
        )  # fmt: skip
        before = {r.id: r.redemption_count for r in await conn.execute(counts)}
        at = bindparam("b_at", type_=assignment.c.valid_from.type)
        cid = bindparam("b_cid", type_=assignment.c.contact_id.type)
        conds = _redeemable(
            self.ctx.tenant_id, bindparam("b_aid", type_=assignment.c.id.type), at, bindparam("b_bit", type_=Integer)
        )
        conds.append(or_(cid.is_(None), assignment.c.contact_id == cid))
        values = _redeemed(at, bindparam("b_ch"), bindparam("b_store"), bindparam("b_receipt"), via)
        await conn.execute(update(assignment).where(and_(*conds)).values(values), [
            {"b_aid": line.assignment_id, "b_at": line.at, "b_bit": CHANNEL_BITS[line.channel], "b_cid": line.contact_id,
             "b_ch": line.channel.value, "b_store": line.store_external_id, "b_receipt": line.unique_receipt_id}
            for line in lines
        ])  # fmt: skip
        after = {r.id: r.redemption_count for r in await conn.execute(counts)}
        won = [line for line in lines if line.assignment_id in before
               and after[line.assignment_id] == before[line.assignment_id] + 1]  # fmt: skip
        if won:
            await conn.execute(
                insert(redemption), [self._redemption_row(line, after[line.assignment_id], via) for line in won]
            )
        return {line.assignment_id for line in won}

    async def _explain_refusal(
        self,
        conn: AsyncConnection,
        assignment_id: uuid.UUID,
        channel: ChannelType,
        at: datetime,
        contact_id: uuid.UUID | None,
    ) -> None:
        row = (
            await conn.execute(
                select(assignment, promotion.c.channel_mask)
                .join(promotion, promotion.c.id == assignment.c.promotion_id)
                .where(assignment.c.id == assignment_id, assignment.c.tenant_id == self.ctx.tenant_id)
            )
        ).first()
        if row is None or row.deleted_at is not None:
            raise PromotionNotFoundError(f"promotion {assignment_id} not found")
        if contact_id is not None and row.contact_id != contact_id:
            raise PromotionNotAssociatedWithContactError("the promotion is not assigned to this contact")
        if row.redeemed_at is not None:
            raise PromotionAlreadyRedeemedError(row, self.ctx.tz)
        if row.channel_mask and not row.channel_mask & CHANNEL_BITS[channel]:
            raise PromotionNotValidForRedemptionChannelError(f"the promotion cannot be redeemed in channel {channel.value}")  # fmt: skip
        if row.valid_to is not None and at > row.valid_to:
            raise PromotionExpiredError(f"the promotion expired at {iso(row.valid_to, self.ctx.tz)}")
        if at < row.valid_from:
            raise PromotionNotYetValidError(f"the promotion is valid from {iso(row.valid_from, self.ctx.tz)}")  # fmt: skip
        raise PromotionNotRedeemableError("the promotion could not be redeemed")

    async def reactivate(self, conn: AsyncConnection, assignment_id: uuid.UUID, *, reason: str = "api",
                         v3: bool = False) -> dict[str, Any]:  # fmt: skip
        limit = self.ctx.reactivation_limit
        won = (
            await conn.execute(
                update(assignment)
                .where(
                    assignment.c.id == assignment_id,
                    assignment.c.tenant_id == self.ctx.tenant_id,
                    assignment.c.redeemed_at.is_not(None),
                    assignment.c.deleted_at.is_(None),
                    assignment.c.reactivation_count < limit,
                    or_(assignment.c.valid_to.is_(None), assignment.c.valid_to >= self.now),
                )
                .values(
                    redeemed_at=None,
                    redeemed_channel=None,
                    redeemed_store=None,
                    redeemed_receipt_id=None,
                    redeemed_via=None,
                    reactivation_count=assignment.c.reactivation_count + 1,
                )
                .returning(assignment.c.redemption_count)
            )
        ).first()
        if won is None:
            row = (
                await conn.execute(
                    select(assignment).where(
                        assignment.c.id == assignment_id, assignment.c.tenant_id == self.ctx.tenant_id
                    )
                )
            ).first()
            if row is None or row.deleted_at is not None:
                raise PromotionNotFoundError(f"promotion {assignment_id} not found")
            if row.redeemed_at is None:
                raise PromotionNotRedeemedError("the promotion is not redeemed")
            if row.valid_to is not None and row.valid_to < self.now:
                raise PromotionExpiredError("the promotion has expired")
            raise ReactivationLimitExceededError(f"the promotion was already reactivated {row.reactivation_count} times")  # fmt: skip
        await conn.execute(
            update(redemption)
            .where(redemption.c.assignment_id == assignment_id, redemption.c.seq == won.redemption_count)
            .values(reactivated_at=self.now)
        )
        await conn.execute(
            insert(assignment_event).values(
                tenant_id=self.ctx.tenant_id,
                assignment_id=assignment_id,
                kind="reactivated",
                at=self.now,
                via=reason,
            )
        )
        return await AssignmentService(self.ctx, self.now).item(conn, assignment_id, v3=v3)

