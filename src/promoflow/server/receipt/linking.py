"""What a stored, matched receipt does to promotions (A12): each `usedPromotions[]` entry is resolved to one of the
contact's assignments and linked; an unredeemed one is redeemed by the receipt through the redemption rule
(`RedemptionService.redeem`, via="receipt", at `createdDate` with the tenant's clock-skew tolerance); a RETURN that names its sale gives back that sale's promotions under
the promotion's `returnPolicy`. Nothing here raises for an entry it cannot use: it becomes a warning.

Resolution of an entry (the receipt's contact is known by now):
1. `couponId`: an assignment id (GUID) or an assignment's external code id; it must belong to the contact.
2. `promotionId` that is an assignment id: as 1.
3. `promotionId` that is a promotion (template) id, among the contact's assignments of it:
   a. the one already redeemed for this very receipt (the POS sent `uniqueReceiptId` with its redeem) → linked;
   b. else the one redeemed within 24 h of the sale and not yet linked to any receipt (the POS redeemed first and
      sends the receipt after, as the Engage flow does) → linked;
   c. else the oldest assignment redeemable at `createdDate` (the rule's conditions, any channel) → redeemed by
      the receipt;
   d. else a warning.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...wire.engage import ReturnPolicy
from ..db import after_commit
from ..dialect import insert_ignore
from ..exceptions import PromoflowError
from ..models import assignment, promotion
from ..models.receipts import receipt, receipt_promotion
from ..observability import metrics
from ..promotion.assignment import RedemptionService
from ..promotion.errors import (
    InvalidPromotionIdError,
    PromotionAlreadyRedeemedError,
    PromotionNotAssociatedWithContactError,
    PromotionNotFoundError,
)
from ..promotion.redemption import Inputs, redeemable, when
from ..tenant.service import TenantContext
from .errors import InvalidUsedPromotionError, NoRedeemableAssignmentError
from .rules import PURCHASE, fully_returned
from .store import CHANNEL_OF_TYPE

LINK_WINDOW = timedelta(hours=24)


# Redemptions by receipts in the redeem metrics (`promoflow_redeem_total{source="receipt"}`), once committed. A link
# to an earlier redemption is not counted again: that redemption was counted by its own source.
def _count_redeemed() -> None:
    metrics.get().redeem("redeemed", source="receipt")


def _count_refused(code: str) -> None:
    metrics.get().redeem("refused", code, source="receipt")


REDEEMED, LINKED, RETURNED = "redeemed", "linked", "returned"


@dataclass(frozen=True)
class Sale:
    """A stored receipt, as the linking needs it (built from the request or from its row: one code path)."""

    receipt_id: uuid.UUID
    unique_receipt_id: str
    contact_id: uuid.UUID
    created_date: datetime
    store_external_id: str
    store_type: str
    currency: str
    total: Decimal
    discount: Decimal
    kind: str
    original_unique_receipt_id: str | None
    body: dict[str, Any] = field(repr=False)

    @property
    def used_promotions(self) -> list[dict[str, Any]]:
        return list(self.body.get("usedPromotions") or ())


@dataclass(frozen=True)
class _Target:
    assignment_id: uuid.UUID
    promotion_id: uuid.UUID
    redeemed: bool
    redemption_count: int


class ReceiptLinker:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now
        # (receipt, promotion) pairs linked so far: all links of a receipt are made in one `apply`.
        self._counted: set[tuple[uuid.UUID, uuid.UUID]] = set()

    async def apply(self, conn: AsyncConnection, sale: Sale) -> list[str]:
        """Link (and redeem) the receipt's used promotions, then handle a return; returns the warnings."""
        warnings: list[str] = []
        done: set[uuid.UUID] = set()
        for i, entry in enumerate(sale.used_promotions):
            try:
                target = await self._resolve(conn, sale, entry)
                if target.assignment_id in done:
                    continue
                done.add(target.assignment_id)
                if await self._use(conn, sale, target):
                    after_commit(conn, _count_redeemed)
            except PromoflowError as exc:
                warnings.append(f"usedPromotions[{i}]: {exc.code}: {exc.message}")
                after_commit(conn, functools.partial(_count_refused, str(exc.code)))
        if sale.original_unique_receipt_id is not None:
            if sale.kind != PURCHASE:
                warnings += await self._return(conn, sale)
            else:
                warnings.append("originalUniqueReceiptId: ignored: the receipt has no RETURN lines")
        return warnings

    # ---------------------------------------------------------------------------------------- resolution

    async def _assignment(self, conn: AsyncConnection, cond: Any) -> Any:
        return (
            await conn.execute(
                select(
                    assignment.c.id,
                    assignment.c.promotion_id,
                    assignment.c.contact_id,
                    assignment.c.redeemed_at,
                    assignment.c.redemption_count,
                    assignment.c.deleted_at,
                ).where(cond, assignment.c.tenant_id == self.ctx.tenant_id)
            )
        ).first()

    def _own(self, row: Any, sale: Sale, ref: str) -> _Target:
        if row.deleted_at is not None:
            raise PromotionNotFoundError(f"promotion {ref} not found")
        if row.contact_id != sale.contact_id:
            raise PromotionNotAssociatedWithContactError(
                f"promotion {ref} is not assigned to the receipt's contact"
            )
        return _Target(row.id, row.promotion_id, row.redeemed_at is not None, row.redemption_count)

    async def _resolve(self, conn: AsyncConnection, sale: Sale, entry: dict[str, Any]) -> _Target:
        coupon, promo = entry.get("couponId"), entry.get("promotionId")
        if not coupon and not promo:
            raise InvalidUsedPromotionError("give couponId or promotionId")
        if coupon:
            guid = parse_guid(str(coupon))
            cond = (
                assignment.c.id == guid if guid is not None else assignment.c.external_code_id == str(coupon)
            )
            row = await self._assignment(conn, cond)
            if row is None:
                raise PromotionNotFoundError(f"no promotion code {coupon!r}")
            return self._own(row, sale, str(coupon))
        guid = parse_guid(str(promo))
        if guid is None:
            raise InvalidPromotionIdError(f"promotionId {promo!r} is not a GUID")
        row = await self._assignment(conn, assignment.c.id == guid)
        if row is not None:
            return self._own(row, sale, str(guid))
        template = await conn.scalar(
            select(promotion.c.id).where(promotion.c.id == guid, promotion.c.tenant_id == self.ctx.tenant_id)
        )
        if template is None:
            raise PromotionNotFoundError(f"promotion {guid} not found")
        return await self._by_template(conn, sale, guid)

    async def _by_template(self, conn: AsyncConnection, sale: Sale, promotion_id: uuid.UUID) -> _Target:
        mine = and_(
            assignment.c.tenant_id == self.ctx.tenant_id,
            assignment.c.promotion_id == promotion_id,
            assignment.c.contact_id == sale.contact_id,
            assignment.c.deleted_at.is_(None),
        )
        cols = (assignment.c.id, assignment.c.promotion_id, assignment.c.redemption_count)
        same = (
            await conn.execute(
                select(*cols).where(mine, assignment.c.redeemed_receipt_id == sale.unique_receipt_id).limit(1)
            )
        ).first()
        if same is not None:
            return _Target(same.id, same.promotion_id, True, same.redemption_count)
        linked = (
            select(receipt_promotion.c.id)
            .where(
                receipt_promotion.c.assignment_id == assignment.c.id,
                receipt_promotion.c.redemption_seq == assignment.c.redemption_count,
                receipt_promotion.c.kind != RETURNED,
            )
            .exists()
        )
        at = sale.created_date
        recent = (
            await conn.execute(
                select(*cols, assignment.c.redeemed_at)
                .where(
                    mine,
                    assignment.c.redeemed_at.between(at - LINK_WINDOW, at + LINK_WINDOW),
                    or_(
                        assignment.c.redeemed_receipt_id.is_(None),
                        assignment.c.redeemed_receipt_id == sale.unique_receipt_id,
                    ),
                    ~linked,
                )
                .order_by(assignment.c.redeemed_at)
            )
        ).all()
        if recent:
            best = min(recent, key=lambda r: abs(r.redeemed_at - at))
            return _Target(best.id, best.promotion_id, True, best.redemption_count)
        open_one = (
            await conn.execute(
                select(*cols)
                .where(mine, *redeemable(Inputs.bound(when(self.ctx, self.now, at), None, None)))
                .order_by(assignment.c.created_at, assignment.c.id)
                .limit(1)
            )
        ).first()
        if open_one is not None:
            return _Target(open_one.id, open_one.promotion_id, False, open_one.redemption_count)
        held = await conn.scalar(select(func.count()).select_from(assignment).where(mine))
        if not held:
            raise PromotionNotAssociatedWithContactError(
                f"promotion {promotion_id} is not assigned to the receipt's contact"
            )
        raise NoRedeemableAssignmentError(
            f"the contact holds no assignment of promotion {promotion_id} that was redeemable at "
            "createdDate or redeemed for this sale"
        )

    # ------------------------------------------------------------------------------------------- linking

    async def _use(self, conn: AsyncConnection, sale: Sale, target: _Target) -> bool:
        """Link the receipt to the assignment, redeeming it first when it is not redeemed; True if it redeemed."""
        kind, seq = LINKED, target.redemption_count
        if not target.redeemed:
            try:
                done = await RedemptionService(self.ctx, self.now).redeem(
                    conn,
                    target.assignment_id,
                    CHANNEL_OF_TYPE.get(sale.store_type, CHANNEL_OF_TYPE["RETAIL"]),
                    contact_id=sale.contact_id,
                    via="receipt",
                    redeemed_on=sale.created_date,
                    store_external_id=sale.store_external_id,
                    unique_receipt_id=sale.unique_receipt_id,
                )
                kind, seq = REDEEMED, done.seq
            except PromotionAlreadyRedeemedError:
                # Lost a race with a redeem of the same assignment (a redeem call, another receipt): link to it.
                seq = int(
                    await conn.scalar(
                        select(assignment.c.redemption_count).where(assignment.c.id == target.assignment_id)
                    )
                    or 0
                )
        await self._link(conn, sale, target.assignment_id, target.promotion_id, kind, seq)
        return kind == REDEEMED

    async def _link(
        self,
        conn: AsyncConnection,
        sale: Sale,
        assignment_id: uuid.UUID,
        promotion_id: uuid.UUID,
        kind: str,
        seq: int | None,
    ) -> None:
        counted = (sale.receipt_id, promotion_id) not in self._counted
        self._counted.add((sale.receipt_id, promotion_id))
        await conn.execute(
            insert_ignore(
                conn,
                receipt_promotion,
                {
                    "tenant_id": self.ctx.tenant_id,
                    "receipt_id": sale.receipt_id,
                    "assignment_id": assignment_id,
                    "promotion_id": promotion_id,
                    "kind": kind,
                    "redemption_seq": seq,
                    "unique_receipt_id": sale.unique_receipt_id,
                    "store_external_id": sale.store_external_id,
                    "created_date": sale.created_date,
                    "currency": sale.currency,
                    "total_gross_price": sale.total,
                    "total_discount": sale.discount,
                    "counted": counted,
                    "linked_at": self.now,
                },
            )
        )

    # ------------------------------------------------------------------------------------------- returns

    async def _return(self, conn: AsyncConnection, sale: Sale) -> list[str]:
        """Link the return to the sale's promotions (so reports net it out); reactivate those whose promotion says
        `reactivateOnReturn` once every line that carried the discount has come back (over all returns of it)."""
        original = (
            await conn.execute(
                select(receipt.c.id, receipt.c.body).where(
                    receipt.c.tenant_id == self.ctx.tenant_id,
                    receipt.c.unique_receipt_id == sale.original_unique_receipt_id,
                )
            )
        ).first()
        if original is None:
            return [
                f"originalUniqueReceiptId: OriginalReceiptNotFound: no receipt "
                f"{sale.original_unique_receipt_id!r}"
            ]
        links = (
            await conn.execute(
                select(
                    receipt_promotion.c.assignment_id,
                    receipt_promotion.c.promotion_id,
                    receipt_promotion.c.redemption_seq,
                    promotion.c.return_policy,
                )
                .join(promotion, promotion.c.id == receipt_promotion.c.promotion_id)
                .where(receipt_promotion.c.receipt_id == original.id, receipt_promotion.c.kind != RETURNED)
                .order_by(receipt_promotion.c.id)
            )
        ).all()
        for link in links:
            await self._link(conn, sale, link.assignment_id, link.promotion_id, RETURNED, link.redemption_seq)
        policed = [lk for lk in links if lk.return_policy == ReturnPolicy.REACTIVATE_ON_RETURN.value]
        if not policed:
            return []
        returns = (
            (
                await conn.execute(
                    select(receipt.c.body).where(
                        receipt.c.tenant_id == self.ctx.tenant_id,
                        receipt.c.original_unique_receipt_id == sale.original_unique_receipt_id,
                    )
                )
            )
            .scalars()
            .all()
        )
        if not fully_returned(
            list(original.body.get("items", ())), [list(b.get("items", ())) for b in returns]
        ):
            return []
        warnings = []
        for link in policed:
            current = (
                await conn.execute(
                    select(assignment.c.redeemed_at, assignment.c.redemption_count).where(
                        assignment.c.id == link.assignment_id
                    )
                )
            ).first()
            if (
                current is None
                or current.redeemed_at is None
                or current.redemption_count != link.redemption_seq
            ):
                continue  # already given back, or redeemed again since: that later redemption stays
            try:
                await RedemptionService(self.ctx, self.now).reactivate(
                    conn, link.assignment_id, reason="return"
                )
            except PromoflowError as exc:
                warnings.append(
                    f"originalUniqueReceiptId: {exc.code}: promotion {link.assignment_id} could not be "
                    f"reactivated: {exc.message}"
                )
        return warnings
