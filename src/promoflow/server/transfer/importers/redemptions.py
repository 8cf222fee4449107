"""Redemption files (A13): each line redeems one assignment through the same exactly-once write as the API.

Per batch (one transaction):

1. The lines are redeemed by the redemption rule's batch strategy for the database
   (`promotion.statements.batch_for`: on PostgreSQL one set-based statement, on SQLite one prepared statement run
   for every line — both the very conditional write of ``RedemptionService.redeem``), with their redemption rows,
   except the lines that replay an earlier redemption (`_replayed`, checked in the same statement).
2. A line left whose ``idempotencyKey`` was already used for this assignment (by the API or an earlier file), or
   whose ``uniqueReceiptId`` is already on a redemption of this assignment, is ``duplicate``: success, nothing
   changed (a key used for another coupon: ``invalid``).
3. Every line left goes through ``RedemptionService.redeem`` itself, whose refusal names the verdict: already
   redeemed (``conflictAlreadyRedeemed`` with when, where, how; ``duplicate`` when it was this receipt),
   ``expired``, ``notFound``, or ``invalid`` with the reason.

A coupon or key that appears twice in one batch is handled in a later round of the batch, so the second line
sees the first one's effect.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from ....kit.timeutil import iso
from ....wire.engage import ChannelType
from ....wire.xml import Record, Redemption, Verdict
from ...dialect import unindexed
from ...exceptions import PromoflowError
from ...models import redemption
from ...promotion.assignment import RedemptionService
from ...promotion.errors import PromotionAlreadyRedeemedError
from ...promotion.redemption import ClientInstants
from ...promotion.rules import CHANNEL_BITS
from ...promotion.statements import LineColumns, RedeemLine, batch_for
from ...tenant.service import TenantContext
from ..results import Outcome
from ._common import refusal

# The lines travel as one JSON array of arrays: one parameter that PostgreSQL parses itself, instead of one
# array parameter per column that the driver encodes element by element.
_LINES = """
    SELECT (e->>0)::uuid AS id, (e->>1)::timestamptz AS at, e->>2 AS ch, (e->>3)::int AS bit, e->>4 AS store,
           e->>5 AS receipt, (e->>6)::uuid AS contact, e->>7 AS ikey, (e->>8)::int AS i
    FROM json_array_elements(CAST(:lines AS json)) AS e
"""

# Earlier redemptions with a line's idempotency key, or with its receipt on its assignment. One index probe per
# line (LATERAL … LIMIT 1): the planner's statistics lag behind a table this very import is filling, and a plan
# that scans the tenant's redemptions per batch would make a large import quadratic. Both branches are scoped to
# the tenant: an assignment id is known only to its own tenant, and another tenant's redemption must never answer
# a line (it would hand out that tenant's redeemedOn, channel, store and receipt). The receipt branch checks the
# tenant AFTER its probe by assignment: with `tenant_id = :t` inside, PostgreSQL probed by the (tenant_id,
# idempotency_key) index, i.e. scanned the tenant's redemptions per line (a 10,000-line first file took 15 s,
# not 0.7 s: bench/RESULTS.md). An assignment's redemptions are all of its one tenant, so this is the same answer.
_PROBE = """
    CROSS JOIN LATERAL (
      (SELECT r.assignment_id, r.idempotency_key, r.unique_receipt_id, r.redeemed_at, r.channel,
              r.store_external_id
       FROM redemption r WHERE v.ikey IS NOT NULL AND r.tenant_id = :t AND r.idempotency_key = v.ikey LIMIT 1)
      UNION ALL
      (SELECT x.assignment_id, x.idempotency_key, x.unique_receipt_id, x.redeemed_at, x.channel,
              x.store_external_id
       FROM (SELECT r.* FROM redemption r WHERE v.receipt IS NOT NULL AND r.assignment_id = v.id
               AND r.unique_receipt_id = v.receipt LIMIT 1) AS x
       WHERE x.tenant_id = :t)
      LIMIT 1
    )
"""

_DUPLICATES = text(f"SELECT v.i AS idx, d.* FROM ({_LINES}) AS v {_PROBE} d")


def _replayed(line: LineColumns) -> ColumnElement[bool]:
    """Whether a line replays an earlier redemption: its idempotency key already used by the tenant, or its receipt
    already on a redemption of its assignment (the batch leaves it to `_duplicates`, which names the verdict).
    The probes are the ones of `_PROBE`, one index look-up each; under UNION ALL, PostgreSQL keeps the EXISTS a
    per-line probe instead of a join that could scan the tenant's redemptions. The receipt's probe needs no
    tenant: the batch writes only the tenant's assignments."""
    by_key = select(redemption.c.id).where(
        line.idempotency_key.is_not(None),
        redemption.c.tenant_id == line.tenant_id,
        redemption.c.idempotency_key == line.idempotency_key,
    )
    by_receipt = select(redemption.c.id).where(
        line.unique_receipt_id.is_not(None),
        redemption.c.assignment_id == line.assignment_id,
        redemption.c.unique_receipt_id == line.unique_receipt_id,
    )
    return union_all(by_key, by_receipt).exists()


def _marks(rec: Record[Redemption]) -> set[str]:
    """What a line reads and writes that another line could too: its coupon, and its idempotency key."""
    marks = {"c:" + rec.value.coupon_id}
    if rec.value.idempotency_key:
        marks.add("k:" + rec.value.idempotency_key)
    return marks


def _rounds(records: list[Record[Redemption]]) -> list[list[Record[Redemption]]]:
    """Split so that no coupon and no idempotency key appears twice in a round, and two lines that share one
    are applied in file order: a line goes into the round after the last one holding any of its marks."""
    rounds: list[tuple[list[Record[Redemption]], set[str]]] = []
    for rec in records:
        marks = _marks(rec)
        after = len(rounds)
        while after and not marks & rounds[after - 1][1]:
            after -= 1
        if after == len(rounds):
            rounds.append(([], set()))
        batch, seen = rounds[after]
        batch.append(rec)
        seen |= marks
    return [batch for batch, _ in rounds]


def _detail(at: datetime | None, channel: str | None, store: str | None, receipt: str | None, tz: Any) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"redeemedOn": iso(at, tz), "redemptionChannel": channel}
    if store:
        out["storeExternalId"] = store
    if receipt:
        out["uniqueReceiptId"] = receipt
    return {k: v for k, v in out.items() if v is not None}


class RedemptionApplier:
    # Two batches whose lines share no coupon and no key cannot see each other's effects: the importer may
    # apply them in overlapping transactions.
    marks = staticmethod(_marks)

    def __init__(self, tenant: TenantContext, imp: Any, now: datetime) -> None:
        self.ctx = tenant
        self.now = now
        self.service = RedemptionService(tenant, now)
        self.instants = ClientInstants(tenant, now)

    async def apply(self, conn: AsyncConnection, records: list[Record[Redemption]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for batch in _rounds(records):
            pending = await self._duplicates(conn, await self._apply_batch(conn, batch, outcomes), outcomes)
            for rec in pending:
                outcomes.append(await self._redeem_one(conn, rec))
        return outcomes

    async def _duplicates(self, conn: AsyncConnection, batch: list[Record[Redemption]],
                          outcomes: list[Outcome]) -> list[Record[Redemption]]:  # fmt: skip
        """Lines already applied (same idempotency key, or same receipt on the same assignment)."""
        hits = await (
            self._hits_pg(conn, batch) if conn.dialect.name == "postgresql" else self._hits(conn, batch)
        )
        return [rec for rec in batch if not self._judge(rec, hits.get(rec.index), outcomes)]

    def _judge(self, rec: Record[Redemption], hit: Any, outcomes: list[Outcome]) -> bool:
        """The verdict of a line that matched an earlier redemption (True), or False when there was none."""
        if hit is None:
            return False
        v = rec.value
        if (
            v.idempotency_key
            and hit.idempotency_key == v.idempotency_key
            and str(hit.assignment_id) != v.coupon_id
        ):
            outcomes.append(Outcome(rec.index, Verdict.INVALID, rec.line, v.coupon_id,
                                    f"idempotencyKey {v.idempotency_key!r} was used for coupon "
                                    f"{hit.assignment_id}"))  # fmt: skip
        else:
            detail = _detail(
                hit.redeemed_at, hit.channel, hit.store_external_id, hit.unique_receipt_id, self.ctx.tz
            )
            outcomes.append(Outcome(rec.index, Verdict.DUPLICATE, rec.line, v.coupon_id, None, detail))
        return True

    async def _apply_batch(self, conn: AsyncConnection, batch: list[Record[Redemption]],
                           outcomes: list[Outcome]) -> list[Record[Redemption]]:  # fmt: skip
        """The lines go through the rule's batch strategy all at once, except those that replay an earlier
        redemption; the lines it did not redeem (and those whose redeemedOn it cannot take) are left."""
        # The file's text as the batch takes it: the coupon and contact ids are canonical GUID text already
        # (`wire.xml`'s Guid), the instant goes as it came, with its grace.
        lines: list[RedeemLine] = []
        for rec in batch:
            v = rec.value
            grace = self.instants.grace(v.redeemed_on)
            if grace is not None:  # else out of range or in the future: `redeem` says so
                lines.append(RedeemLine(v.coupon_id, v.redemption_channel, v.redeemed_on, grace, v.contact_id,
                                        v.store_external_id, v.unique_receipt_id, v.idempotency_key))  # fmt: skip
        won = await batch_for(conn, self.ctx, self.now, via="file").redeem_many(conn, lines, skip=_replayed)
        left = []
        for rec in batch:
            # A line's coupon is its assignment's id; no coupon appears twice in a round.
            if rec.value.coupon_id in won:
                outcomes.append(Outcome(rec.index, Verdict.APPLIED, rec.line, rec.value.coupon_id))
            else:
                left.append(rec)
        return left

    def _lines(self, records: list[Record[Redemption]]) -> str:
        return json.dumps(
            [
                [v.coupon_id, v.redeemed_on.isoformat(), v.redemption_channel.value, CHANNEL_BITS[v.redemption_channel],
                 v.store_external_id, v.unique_receipt_id, v.contact_id, v.idempotency_key, r.index]
                for r in records
                for v in (r.value,)
            ]
        )  # fmt: skip

    async def _hits_pg(self, conn: AsyncConnection, batch: list[Record[Redemption]]) -> dict[int, Any]:
        lines = [r for r in batch if r.value.idempotency_key or r.value.unique_receipt_id]
        if not lines:
            return {}
        params = {"t": self.ctx.tenant_id, "lines": self._lines(lines)}
        return {row.idx: row for row in await conn.execute(_DUPLICATES, params)}

    async def _hits(self, conn: AsyncConnection, batch: list[Record[Redemption]]) -> dict[int, Any]:
        keys = {r.value.idempotency_key for r in batch if r.value.idempotency_key}
        receipts = {r.value.coupon_id for r in batch if r.value.unique_receipt_id}
        by_key: dict[str, Any] = {}
        by_receipt: dict[tuple[str, str], Any] = {}
        cols = (redemption.c.assignment_id, redemption.c.idempotency_key, redemption.c.unique_receipt_id,
                redemption.c.redeemed_at, redemption.c.channel, redemption.c.store_external_id)  # fmt: skip
        if keys:
            rows = await conn.execute(
                select(*cols).where(redemption.c.tenant_id == self.ctx.tenant_id, redemption.c.idempotency_key.in_(keys))
            )  # fmt: skip
            by_key = {r.idempotency_key: r for r in rows}
        if receipts:
            rows = await conn.execute(
                select(*cols).where(
                    unindexed(conn, redemption.c.tenant_id) == self.ctx.tenant_id,  # look up by assignment
                    redemption.c.assignment_id.in_([uuid.UUID(c) for c in receipts]),
                    redemption.c.unique_receipt_id.is_not(None),
                )
            )
            by_receipt = {(str(r.assignment_id), r.unique_receipt_id): r for r in rows}
        hits: dict[int, Any] = {}
        for rec in batch:
            v = rec.value
            hit = by_key.get(v.idempotency_key) if v.idempotency_key else None
            if hit is None and v.unique_receipt_id:
                hit = by_receipt.get((v.coupon_id, v.unique_receipt_id))
            if hit is not None:
                hits[rec.index] = hit
        return hits

    async def _redeem_one(self, conn: AsyncConnection, rec: Record[Redemption]) -> Outcome:
        v = rec.value
        try:
            await self.service.redeem(
                conn,
                uuid.UUID(v.coupon_id),
                ChannelType(v.redemption_channel),
                contact_id=uuid.UUID(v.contact_id) if v.contact_id else None,
                via="file",
                redeemed_on=v.redeemed_on,
                store_external_id=v.store_external_id,
                unique_receipt_id=v.unique_receipt_id,
                idempotency_key=v.idempotency_key,
            )
        except PromotionAlreadyRedeemedError as exc:
            detail = _detail(
                exc.redeemed_at, exc.channel, exc.store_external_id, exc.unique_receipt_id, self.ctx.tz
            )
            if v.unique_receipt_id and exc.unique_receipt_id == v.unique_receipt_id:
                return Outcome(rec.index, Verdict.DUPLICATE, rec.line, v.coupon_id, None, detail)
            return Outcome(
                rec.index, Verdict.CONFLICT_ALREADY_REDEEMED, rec.line, v.coupon_id, exc.message, detail
            )
        except PromoflowError as exc:
            return refusal(rec, v.coupon_id, exc)
        return Outcome(rec.index, Verdict.APPLIED, rec.line, v.coupon_id)
