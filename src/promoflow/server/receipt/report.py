"""Promotion reports (extension): "did this promotion work?" in one call.

Figures, all for one promotion of the tenant:
- assigned (not deleted), deleted, reactivated (reactivations so far), redeemed (currently redeemed), redemption
  rate (redeemed / assigned);
- shown: assignments fetched at least once; impressions: fetches in all;
- receipts / returns: distinct sale / RETURN receipts linked to the promotion; revenue and discount: their
  ``totalGrossPrice`` and line discounts, net of the linked returns, per currency;
- by channel and by store (of the redemption; receipts by their store), by day in the tenant's time zone
  (shown by the day first shown, redeemed by the sale's day, receipts by the receipt's day).

Each figure is one grouped query over an index range of the promotion (assignment by promotion, the receipt links
and the shown summary by promotion), so the time grows with the promotion's size, not the tenant's.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, String, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.csvtext import csv_text
from ...kit.present import present, without_none
from ..models import assignment, promotion
from ..models.receipts import assignment_shown, receipt_promotion, store
from ..promotion.rules import status_of
from ..promotion.service import parse_promotion_id, promotion_not_found
from ..tenant.service import TenantContext
from .history import number
from .linking import RETURNED


class _Day:
    """The local calendar day of a UTC timestamp column, in SQL: exact on PostgreSQL (AT TIME ZONE); on SQLite,
    which has no time zones, 15-minute UTC buckets that Python maps to local days (every zone's offset and DST
    switch falls on a quarter hour, so a bucket never straddles two local days)."""

    def __init__(self, conn: AsyncConnection, tz: ZoneInfo) -> None:
        self.pg = conn.dialect.name == "postgresql"
        self.tz = tz

    def expr(self, col: Any) -> Any:
        if self.pg:
            return cast(func.timezone(self.tz.key, col), Date)
        quarter = cast(cast(func.strftime("%M", col), Integer) // 15, String)
        return cast(func.strftime("%Y-%m-%d %H:", col, type_=String).concat(quarter), String)

    def day(self, value: Any) -> str | None:
        if value is None:
            return None
        if self.pg:
            return str(value)
        stamp, quarter = value.rsplit(":", 1)
        start = datetime.strptime(stamp, "%Y-%m-%d %H").replace(tzinfo=UTC) + timedelta(
            minutes=15 * int(quarter)
        )
        return start.astimezone(self.tz).date().isoformat()


@dataclass(frozen=True)
class Cell:
    """One group of a report's query: a local day (ISO), a kind (the redemption channel; for receipts ``sale`` or
    ``returned``), a store (None when unknown) and how many."""

    day: str
    kind: str
    store: str | None
    n: int


def local_day_of(conn: AsyncConnection, tz: ZoneInfo) -> _Day:
    """The reports' local-day grouping (the same on every figure), for a caller that adds a figure of its own."""
    return _Day(conn, tz)


def _figures(**extra: int) -> dict[str, Any]:
    return {
        **extra,
        "redeemed": 0,
        "receipts": 0,
        "returns": 0,
        "revenue": defaultdict(Decimal),
        "discount": defaultdict(Decimal),
    }


def _money(values: dict[str, Decimal]) -> dict[str, int | float]:
    return {cur: number(v) for cur, v in sorted(values.items())}


def _rate(redeemed: int, assigned: int) -> float:
    return round(redeemed / assigned, 4) if assigned else 0.0


class ReportService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def promotion(self, conn: AsyncConnection, promotion_ref: str) -> dict[str, Any]:
        return (await self.promotion_detail(conn, promotion_ref))[0]

    async def promotion_detail(
        self, conn: AsyncConnection, promotion_ref: str
    ) -> tuple[dict[str, Any], list[Cell], list[Cell]]:
        """The report, and the cells it was summed from (same queries, one pass): redemptions per (local day,
        channel, store) and linked receipts per (local day, store, sale | return) — the admin UI's charts."""
        pid = parse_promotion_id(promotion_ref)
        tid = self.ctx.tenant_id
        promo = (
            await conn.execute(select(promotion).where(promotion.c.id == pid, promotion.c.tenant_id == tid))
        ).first()
        if promo is None:
            raise promotion_not_found(pid)
        d = _Day(conn, self.ctx.tz)
        total = _figures(assigned=0)
        days: dict[str, dict[str, Any]] = defaultdict(lambda: _figures(shown=0))
        stores: dict[str | None, dict[str, Any]] = defaultdict(_figures)
        channels: dict[str, int] = defaultdict(int)
        deleted = reactivated = shown = impressions = 0

        redeemed_cells: list[Cell] = []
        receipt_cells: list[Cell] = []
        for day, channel, store_id, n, live, gone, again in await self._assignments(conn, d, pid):
            total["assigned"] += live
            deleted += gone
            reactivated += again
            if n:
                redeemed_cells.append(Cell(str(d.day(day)), str(channel), store_id, n))
                total["redeemed"] += n
                days[str(d.day(day))]["redeemed"] += n
                channels[str(channel)] += n
                stores[store_id]["redeemed"] += n

        s = assignment_shown.c
        first = d.expr(s.first_shown_at)
        for r in await conn.execute(
            select(first, func.count(), func.sum(s.times))
            .where(s.promotion_id == pid, s.tenant_id == tid)
            .group_by(first)
        ):
            shown += int(r[1])
            impressions += int(r[2] or 0)
            days[str(d.day(r[0]))]["shown"] += int(r[1])

        for _, day, store_id, currency, is_return, n, revenue, discount in await self._sales(conn, d, [pid]):
            receipt_cells.append(Cell(str(d.day(day)), RETURNED if is_return else "sale", store_id, n))
            for fig in (total, days[str(d.day(day))], stores[store_id]):
                fig["returns" if is_return else "receipts"] += n
                fig["revenue"][currency] += revenue
                fig["discount"][currency] += discount
        names = await self._store_names(conn, [k for k in stores if k is not None])

        def out(fig: dict[str, Any], **extra: Any) -> dict[str, Any]:
            return {**extra, **fig, "revenue": _money(fig["revenue"]), "discount": _money(fig["discount"])}

        report = without_none({
            "promotionId": str(promo.id),
            "externalId": promo.external_id,
            "name": promo.name,
            "status": status_of(promo, self.now, self.ctx.tz).value,
            "timeZone": self.ctx.tz.key,
            "assigned": total["assigned"],
            "deleted": deleted,
            "shown": shown,
            "impressions": impressions,
            "redeemed": total["redeemed"],
            "reactivated": reactivated,
            "redemptionRate": _rate(total["redeemed"], total["assigned"]),
            "receipts": total["receipts"],
            "returns": total["returns"],
            "revenue": _money(total["revenue"]),
            "discount": _money(total["discount"]),
            "byChannel": [{"channel": ch, "redeemed": n} for ch, n in sorted(channels.items())],
            "byStore": [
                # storeExternalId is required: its null means "redeemed without a store".
                present(out(fig, storeExternalId=key), storeName=names.get(key) if key else None)
                for key, fig in sorted(stores.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
            ],
            "byDay": [out(fig, date=key) for key, fig in sorted(days.items())],
        })  # fmt: skip
        return report, redeemed_cells, receipt_cells

    async def _assignments(
        self, conn: AsyncConnection, d: _Day, pid: uuid.UUID
    ) -> list[tuple[Any, str | None, str | None, int, int, int, int]]:
        """(redeemed day, channel, store, redeemed, live, deleted, reactivations) of the promotion's assignments,
        in one pass over them — the largest read of a report. Not-redeemed assignments form the group with no
        day. (Assigned per day would need a second pass over all of them: measured, it nearly doubled the report's
        time for a promotion of a million assignments, so the report gives assigned as a total.)"""
        a = assignment.c
        used = d.expr(a.redeemed_at)
        redeemed = and_(a.redeemed_at.is_not(None), a.deleted_at.is_(None))
        rows = await conn.execute(
            select(
                used,
                a.redeemed_channel,
                a.redeemed_store,
                func.count().filter(redeemed),
                func.count(),
                func.count(a.deleted_at),
                func.coalesce(func.sum(a.reactivation_count), 0),
            )
            .where(a.promotion_id == pid, a.tenant_id == self.ctx.tenant_id)
            .group_by(used, a.redeemed_channel, a.redeemed_store)
        )
        return [(r[0], r[1], r[2], int(r[3]), int(r[4]) - int(r[5]), int(r[5]), int(r[6])) for r in rows]

    async def _sales(
        self, conn: AsyncConnection, d: _Day | None, promotion_ids: list[uuid.UUID]
    ) -> list[tuple[Any, ...]]:
        """(promotion, day, store, currency, is_return, receipts, revenue, discount) of the receipts linked to the
        promotions. A receipt that used several assignments of one promotion has one `counted` link for it, so
        each receipt counts once per promotion. Without ``d``, day and store are not grouped (None)."""
        rp = receipt_promotion.c
        is_return = case((rp.kind == RETURNED, 1), else_=0)
        keys = [rp.promotion_id, rp.currency, is_return]
        if d is not None:
            keys += [d.expr(rp.created_date), rp.store_external_id]
        rows = await conn.execute(
            select(*keys, func.count(), func.sum(rp.total_gross_price), func.sum(rp.total_discount))
            .where(
                rp.tenant_id == self.ctx.tenant_id, rp.promotion_id.in_(promotion_ids), rp.counted.is_(True)
            )
            .group_by(*keys)
        )
        out = []
        for r in rows:
            day, store_id = (r[3], r[4]) if d is not None else (None, None)
            n, revenue, discount = r[-3], r[-2], r[-1]
            out.append(
                (r[0], day, store_id, r[1], bool(r[2]), int(n), Decimal(revenue or 0), Decimal(discount or 0))
            )
        return out

    async def _store_names(self, conn: AsyncConnection, ids: list[str]) -> dict[str, str | None]:
        if not ids:
            return {}
        rows = await conn.execute(
            select(store.c.external_id, store.c.name).where(
                store.c.tenant_id == self.ctx.tenant_id, store.c.external_id.in_(ids)
            )
        )
        return {r.external_id: r.name for r in rows}

    async def promotions(self, conn: AsyncConnection, *, offset: int, count: int) -> dict[str, Any]:
        """Every promotion of the tenant (oldest first, paged) with its headline figures."""
        tid = self.ctx.tenant_id
        total = int(
            await conn.scalar(select(func.count()).select_from(promotion).where(promotion.c.tenant_id == tid))
            or 0
        )
        promos = (
            await conn.execute(
                select(promotion)
                .where(promotion.c.tenant_id == tid)
                .order_by(promotion.c.created_at, promotion.c.id)
                .offset(offset)
                .limit(count)
            )
        ).all()
        ids = [p.id for p in promos]
        figures: dict[uuid.UUID, dict[str, Any]] = {pid: _figures(assigned=0, shown=0) for pid in ids}
        if ids:
            a = assignment.c
            for r in await conn.execute(
                select(a.promotion_id, func.count(), func.count(a.redeemed_at))
                .where(a.tenant_id == tid, a.promotion_id.in_(ids), a.deleted_at.is_(None))
                .group_by(a.promotion_id)
            ):
                figures[r[0]]["assigned"] = int(r[1])
                figures[r[0]]["redeemed"] = int(r[2])
            s = assignment_shown.c
            for r in await conn.execute(
                select(s.promotion_id, func.count())
                .where(s.tenant_id == tid, s.promotion_id.in_(ids))
                .group_by(s.promotion_id)
            ):
                figures[r[0]]["shown"] = int(r[1])
            for pid, _, _, currency, is_return, n, revenue, _ in await self._sales(conn, None, ids):
                figures[pid]["receipts"] += 0 if is_return else n
                figures[pid]["revenue"][currency] += revenue
        items = []
        for p in promos:
            fig = figures[p.id]
            items.append(
                without_none(
                    {
                        "promotionId": str(p.id),
                        "externalId": p.external_id,
                        "name": p.name,
                        "status": status_of(p, self.now, self.ctx.tz).value,
                        "assigned": fig["assigned"],
                        "shown": fig["shown"],
                        "redeemed": fig["redeemed"],
                        "redemptionRate": _rate(fig["redeemed"], fig["assigned"]),
                        "receipts": fig["receipts"],
                        "revenue": _money(fig["revenue"]),
                    }
                )
            )
        return {"items": items, "totalCount": total, "offset": offset, "count": len(items)}


# ------------------------------------------------------------------------------------------------- CSV


def _currencies(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({cur for r in rows for cur in (*r.get("revenue", {}), *r.get("discount", {}))})


def report_csv(report: dict[str, Any]) -> str:
    """One table: a `total` row, then `channel`, `store` and `day` rows; money in one column per currency."""
    rows = [report, *report["byStore"], *report["byDay"]]
    curs = _currencies(rows)
    header = [
        "section",
        "key",
        "name",
        "assigned",
        "shown",
        "redeemed",
        "redemptionRate",
        "receipts",
        "returns",
    ]
    header += [f"{kind}_{cur}" for cur in curs for kind in ("revenue", "discount")]

    def money(fig: dict[str, Any]) -> list[Any]:
        return [fig.get(kind, {}).get(cur, 0) for cur in curs for kind in ("revenue", "discount")]

    out: list[list[Any]] = [
        [
            "total",
            report["promotionId"],
            report["name"],
            report["assigned"],
            report["shown"],
            report["redeemed"],
            report["redemptionRate"],
            report["receipts"],
            report["returns"],
            *money(report),
        ]
    ]
    out += [
        ["channel", c["channel"], "", "", "", c["redeemed"], "", "", "", *[""] * (2 * len(curs))]
        for c in report["byChannel"]
    ]
    out += [
        [
            "store",
            s["storeExternalId"] or "",
            s.get("storeName") or "",
            "",
            "",
            s["redeemed"],
            "",
            s["receipts"],
            s["returns"],
            *money(s),
        ]
        for s in report["byStore"]
    ]
    out += [
        [
            "day",
            d["date"],
            "",
            "",
            d["shown"],
            d["redeemed"],
            "",
            d["receipts"],
            d["returns"],
            *money(d),
        ]
        for d in report["byDay"]
    ]
    return csv_text(header, out)


def promotions_csv(page: dict[str, Any]) -> str:
    items = page["items"]
    curs = _currencies(items)
    header = [
        "promotionId",
        "externalId",
        "name",
        "status",
        "assigned",
        "shown",
        "redeemed",
        "redemptionRate",
        "receipts",
        *[f"revenue_{cur}" for cur in curs],
    ]
    rows = [
        [
            i["promotionId"],
            i.get("externalId") or "",
            i["name"],
            i["status"],
            i["assigned"],
            i["shown"],
            i["redeemed"],
            i["redemptionRate"],
            i["receipts"],
            *[i["revenue"].get(cur, 0) for cur in curs],
        ]
        for i in items
    ]
    return csv_text(header, rows)
