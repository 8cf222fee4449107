"""Assignments (A6), fetching (A7), redeeming (A8) and reactivation (A10): the services.

The redemption rule itself — when an assignment is redeemable, the fetch filter, the redeem statements and the
explanation of a refusal — lives in `redemption.py`; everything here applies it. `RedemptionService.redeem` is the
single-row redeem (the routed API, receipts, and the lines of a file a batch did not redeem); a file's batches go
through `statements.batch_for`, and the fast path (`fastlane.py`) runs `statements.PG_REDEEM` (the redeems of
concurrent requests in one statement, a line each) or, on SQLite
(`sqlitelane.py`), `statements.SQLITE_REDEEM`. All of
them are the same conditional write (``UPDATE … WHERE redeemed_at IS NULL AND …``), so exactly-once holds for all:
whichever transaction gets there first changes the row; every other sees no row to change and is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...wire.engage import ChannelType, PromotionStatus
from ..audit import record
from ..contact.errors import ContactNotFoundError
from ..dialect import insert_ignore, unindexed
from ..models import assignment, assignment_event, contact, promotion, redemption
from ..tenant.service import TenantContext
from .domain import AssignmentView, PromotionFace
from .errors import (
    AmbiguousPromotionIdError,
    InvalidPromotionIdNoDataError,
    PromotionExpiredError,
    PromotionNotActiveError,
    PromotionNotAssociatedWithContactError,
    PromotionNotFoundError,
    PromotionNotRedeemedError,
    ReactivationLimitExceededError,
)
from .redemption import (
    Inputs,
    When,
    redeem_statement,
    redeemable,
    redeemed_values,
    refusal,
    shown,
    when,
)
from .rules import assignment_window, status_of
from .service import promotion_not_found
from .statements import redemption_row

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


def parse_assignment_id(value: str) -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise InvalidPromotionIdNoDataError(f"promotion id {value!r} is not a GUID")
    return guid


@dataclass(frozen=True)
class Redeemed:
    """The outcome of one successful redemption: the assignment as it now is, and its redemption's number."""

    assignment: AssignmentView
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
                select(promotion).where(
                    promotion.c.id == promotion_id, promotion.c.tenant_id == self.ctx.tenant_id
                )
            )
        ).first()
        if row is None:
            raise promotion_not_found(promotion_id)
        status = status_of(row, self.now, self.ctx.tz)
        if status is PromotionStatus.DRAFT or (
            status is PromotionStatus.ENDED and row.deactivated_at is not None
        ):
            raise PromotionNotActiveError(f"promotion is {status.value}; only Scheduled or Active ones are assigned")  # fmt: skip
        if status is PromotionStatus.ENDED:
            raise PromotionExpiredError("the promotion's end date has passed")
        return row

    def _window(self, promo: Any) -> tuple[datetime, datetime | None]:
        return assignment_window(
            promo.start_date,
            promo.end_date,
            promo.assigned_unit,
            promo.assigned_amount,
            self.now,
            self.ctx.tz,
        )

    async def assign(
        self,
        conn: AsyncConnection,
        contact_id: uuid.UUID,
        promotion_id: uuid.UUID,
        *,
        source: str = "api",
        external_code_id: str | None = None,
    ) -> AssignmentView:
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
        after = {"promotionId": promo.id, "promotionName": promo.name, "contactId": contact_id,
                 "validFrom": valid_from, "validTo": valid_to, "source": source}  # fmt: skip
        await record(conn, self.ctx.tenant_id, self.ctx.actor, "assignment.create", "assignment", new_id,
                     after=after, at=self.now, contact_id=contact_id, promotion_id=promo.id)  # fmt: skip
        return await self.item(conn, new_id)

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
                        unindexed(conn, contact.c.tenant_id) == self.ctx.tenant_id,
                        contact.c.id.in_(contact_ids),
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

    async def item(self, conn: AsyncConnection, assignment_id: uuid.UUID) -> AssignmentView:
        row = (
            await conn.execute(
                select(*_ITEM_COLUMNS)
                .join(promotion, promotion.c.id == assignment.c.promotion_id)
                .where(assignment.c.id == assignment_id, assignment.c.tenant_id == self.ctx.tenant_id)
            )
        ).first()
        if row is None:
            raise PromotionNotFoundError(f"promotion {assignment_id} not found")
        return AssignmentView.of(row)

    async def list_for_contact(
        self, conn: AsyncConnection, contact_id: uuid.UUID, channel: ChannelType | None, *,
        include_redeemed: bool = False,
    ) -> list[AssignmentView]:  # fmt: skip
        """The contact's assignments shown now (A7; the rule's fetch filter), oldest first."""
        inputs = Inputs.bound(When.server(self.now), channel, contact_id)
        rows = (
            await conn.execute(
                select(*_ITEM_COLUMNS)
                .join(promotion, promotion.c.id == assignment.c.promotion_id)
                .where(assignment.c.tenant_id == self.ctx.tenant_id,
                       *shown(inputs, include_redeemed=include_redeemed))
                .order_by(assignment.c.created_at, assignment.c.id)
            )
        ).all()  # fmt: skip
        if not rows:
            found = await conn.scalar(
                select(contact.c.id).where(
                    contact.c.id == contact_id, contact.c.tenant_id == self.ctx.tenant_id
                )
            )
            if found is None:
                raise ContactNotFoundError(f"contact {contact_id} not found")
        faces: dict[uuid.UUID, PromotionFace] = {}
        return [AssignmentView.of(r, faces.get(r.promotion_id) or faces.setdefault(r.promotion_id, PromotionFace.of(r)))
                for r in rows]  # fmt: skip


class RedemptionService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def resolve_for_contact(
        self, conn: AsyncConnection, contact_id: uuid.UUID, ident: uuid.UUID
    ) -> uuid.UUID:
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
            (
                await conn.execute(
                    select(assignment.c.id)
                    .where(
                        assignment.c.promotion_id == ident,
                        assignment.c.tenant_id == self.ctx.tenant_id,
                        *redeemable(Inputs.bound(When.server(self.now), None, contact_id)),
                    )
                    .order_by(assignment.c.created_at, assignment.c.id)
                    .limit(2)
                )
            )
            .scalars()
            .all()
        )
        if len(candidates) == 1:
            return cast(uuid.UUID, candidates[0])
        if len(candidates) > 1:
            raise AmbiguousPromotionIdError("the contact holds several redeemable assignments of this promotion; redeem by the "
                           "assignment id")  # fmt: skip
        # None redeemable, but the contact may hold the promotion: its assignment answers why not (the rule's
        # refusal: already redeemed, expired, not yet valid), not "not assigned". The latest redeemed first, so
        # a client that retries its own uncertain redeem hears "already redeemed" (Part B §5, A17).
        held = await conn.scalar(
            select(assignment.c.id)
            .where(
                assignment.c.promotion_id == ident,
                assignment.c.tenant_id == self.ctx.tenant_id,
                assignment.c.contact_id == contact_id,
                assignment.c.deleted_at.is_(None),
            )
            .order_by(
                assignment.c.redeemed_at.is_(None),
                assignment.c.redeemed_at.desc(),
                assignment.c.created_at.desc(),
                assignment.c.id.desc(),
            )
            .limit(1)
        )
        if held is not None:
            return cast(uuid.UUID, held)
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
    ) -> Redeemed:
        """Redeem one assignment with the rule's conditional write (at ``redeemed_on``, a client's instant, or
        now), and write its redemption row; a refusal raises the error of the first condition that fails."""
        moment = when(self.ctx, self.now, redeemed_on)
        inputs = Inputs.bound(moment, channel, contact_id)
        values = redeemed_values(moment.at, channel.value, store_external_id, unique_receipt_id, via)
        won = (
            await conn.execute(
                redeem_statement(self.ctx.tenant_id, assignment_id, inputs, values).returning(
                    assignment.c.redemption_count, assignment.c.contact_id
                )
            )
        ).first()
        if won is None:
            raise await refusal(conn, self.ctx, assignment_id, moment, channel, contact_id)
        row = redemption_row(self.ctx, self.now, assignment_id, moment.at, channel, store_external_id,
                             unique_receipt_id, idempotency_key, seq=won.redemption_count, via=via)  # fmt: skip
        await conn.execute(insert(redemption).values(row))
        view = await AssignmentService(self.ctx, self.now).item(conn, assignment_id)
        return Redeemed(view, won.contact_id, moment.at, won.redemption_count)

    async def reactivate(
        self, conn: AsyncConnection, assignment_id: uuid.UUID, *, reason: str = "api", why: str | None = None
    ) -> AssignmentView:
        """Undo the assignment's redemption (within the tenant's limit). ``reason`` is the way it came (api,
        admin); ``why`` the words a person gave, kept in the audit log."""
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
                .returning(
                    assignment.c.redemption_count,
                    assignment.c.reactivation_count,
                    assignment.c.contact_id,
                    assignment.c.promotion_id,
                )  # fmt: skip
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
        undone = (
            await conn.execute(
                update(redemption)
                .where(redemption.c.assignment_id == assignment_id, redemption.c.seq == won.redemption_count)
                .values(reactivated_at=self.now)
                .returning(redemption.c.redeemed_at, redemption.c.channel, redemption.c.store_external_id)
            )
        ).first()
        before = {"redeemed": True, "reactivationCount": won.reactivation_count - 1}
        if undone is not None:
            before |= {"redeemedAt": undone.redeemed_at, "channel": undone.channel,
                       "store": undone.store_external_id}  # fmt: skip
        after: dict[str, Any] = {"redeemed": False, "reactivationCount": won.reactivation_count}
        if why:
            after["reason"] = why
        await record(conn, self.ctx.tenant_id, self.ctx.actor, "redemption.reactivate", "assignment",
                     assignment_id, before, after, at=self.now, contact_id=won.contact_id,
                     promotion_id=won.promotion_id)  # fmt: skip
        await conn.execute(
            insert(assignment_event).values(
                tenant_id=self.ctx.tenant_id,
                assignment_id=assignment_id,
                kind="reactivated",
                at=self.now,
                via=reason,
            )
        )
        return await AssignmentService(self.ctx, self.now).item(conn, assignment_id)
