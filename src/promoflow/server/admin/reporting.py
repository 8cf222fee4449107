"""What the Reports screen shows, taken from the API's promotion report (`receipt/report.py`), never re-counted.

The funnel is the API report's own totals (``GET /api/v2/reports/promotions/{id}``): Assigned, Shown, Redeemed,
Returned. The views over time are the cells that report was summed from (redemptions per local day, channel and
store; linked receipts per local day and store), cut to the chosen date range; the one figure the API report gives
only as a total, assigned per day, is counted here by the report's own local-day grouping over the promotion's
assignments (not deleted, as the API's total).

Those figures are one `Snapshot` (`compute`): taken live for a small promotion, or stored by the worker's
report-snapshot job (`snapshots.py`) for a large one; `build` cuts a snapshot to the page's date range.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.csvtext import csv_text
from ...kit.timeutil import local_date
from ..models import assignment
from ..receipt.linking import RETURNED
from ..receipt.report import Cell, ReportService, local_day_of
from ..tenant.service import TenantContext

MAX_DAYS = 366
DEFAULT_DAYS = 30
TOP_STORES = 5
NO_STORE = "(no store)"


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


@dataclass
class Step:
    label: str
    value: int
    rate_label: str = ""
    rate: str = ""


@dataclass
class DayRow:
    day: date
    assigned: int = 0
    shown: int = 0
    redeemed: int = 0
    returned: int = 0


@dataclass
class GroupRow:
    key: str
    name: str
    redeemed: int = 0
    receipts: int = 0
    returned: int = 0
    per_day: dict[date, int] = field(default_factory=dict)


@dataclass
class PromotionReport:
    id: uuid.UUID
    api: dict[str, Any]  # the API's report, as GET /api/v2/reports/promotions/{id} answers
    start: date
    end: date
    days: list[date]
    by_day: list[DayRow]
    by_channel: list[GroupRow]
    by_store: list[GroupRow]
    as_of: datetime
    live: bool = False
    """Counted for this view (a small promotion), not read from a stored snapshot."""

    @property
    def name(self) -> str:
        return str(self.api["name"])

    @property
    def funnel(self) -> list[Step]:
        a = self.api
        return [
            Step("Assigned", a["assigned"]),
            Step("Shown", a["shown"], "of assigned", rate(a["shown"], a["assigned"])),
            Step("Redeemed", a["redeemed"], "of assigned", rate(a["redeemed"], a["assigned"])),
            Step("Returned", a["returns"], "of redeemed", rate(a["returns"], self.redeemed_ever)),
        ]

    @property
    def redeemed_ever(self) -> int:
        """Redemptions made, including those given back since (a return or a marketer reactivated them): what
        returns are a share of. "Redeemed" counts what is redeemed now, so it alone can be below "Returned"."""
        return int(self.api["redeemed"]) + int(self.api.get("reactivated") or 0)

    def range_total(self) -> DayRow:
        t = DayRow(self.end)
        for r in self.by_day:
            t.assigned += r.assigned
            t.shown += r.shown
            t.redeemed += r.redeemed
            t.returned += r.returned
        return t


def date_range(
    ctx: TenantContext, now: datetime, api: dict[str, Any], start: date | None, end: date | None
) -> tuple[date, date]:
    """The chosen days, or by default the last 30 days up to today (or to the promotion's end, if earlier)."""
    today = local_date(now, ctx.tz)
    if end is None:
        end = today
        if start is not None:
            end = min(start + timedelta(days=DEFAULT_DAYS - 1), today) if start <= today else start
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
    return start, end


async def assigned_per_day(conn: AsyncConnection, ctx: TenantContext, pid: uuid.UUID) -> dict[str, int]:
    """Assignments made per local day (ISO), not deleted, like the report's Assigned."""
    a = assignment.c
    d = local_day_of(conn, ctx.tz)
    day = d.expr(a.created_at)
    rows = await conn.execute(
        select(day, func.count())
        .where(a.promotion_id == pid, a.tenant_id == ctx.tenant_id, a.deleted_at.is_(None))
        .group_by(day)
    )
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        out[str(d.day(r[0]))] += int(r[1])
    return dict(out)


@dataclass
class Snapshot:
    """Everything the page shows of one promotion, as of ``computed_at``: the API report and the cells it was
    summed from (`ReportService.promotion_detail`), and assignments per local day. Stored as JSON (``payload``)."""

    computed_at: datetime
    api: dict[str, Any]
    redeemed: list[Cell]
    receipts: list[Cell]
    assigned_by_day: dict[str, int]

    def payload(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "redeemed": [[c.day, c.kind, c.store, c.n] for c in self.redeemed],
            "receipts": [[c.day, c.kind, c.store, c.n] for c in self.receipts],
            "assignedByDay": self.assigned_by_day,
        }

    @classmethod
    def from_payload(cls, computed_at: datetime, payload: dict[str, Any]) -> Snapshot:
        return cls(
            computed_at=computed_at,
            api=payload["api"],
            redeemed=[Cell(str(c[0]), str(c[1]), c[2], int(c[3])) for c in payload["redeemed"]],
            receipts=[Cell(str(c[0]), str(c[1]), c[2], int(c[3])) for c in payload["receipts"]],
            assigned_by_day={str(k): int(v) for k, v in payload["assignedByDay"].items()},
        )


async def compute(conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID) -> Snapshot:
    """The figures of the promotion now: the API's report code itself, plus assigned per day."""
    api, redeemed, receipts = await ReportService(ctx, now).promotion_detail(conn, str(pid))
    return Snapshot(now, api, _merged(redeemed), _merged(receipts), await assigned_per_day(conn, ctx, pid))


def _merged(cells: list[Cell]) -> list[Cell]:
    """One cell per (local day, kind, store): on SQLite the report groups by quarter hour, so a large promotion has
    a cell per quarter hour until summed into its day here (the page sums them the same way)."""
    sums: dict[tuple[str, str, str | None], int] = defaultdict(int)
    for c in cells:
        sums[(c.day, c.kind, c.store)] += c.n
    return [Cell(day, kind, store, n) for (day, kind, store), n in sums.items()]


def _in(day: str, start: date, end: date) -> date | None:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return None
    return d if start <= d <= end else None


def build(
    ctx: TenantContext, now: datetime, pid: uuid.UUID, snap: Snapshot, start: date | None = None,
    end: date | None = None, *, live: bool = False,
) -> PromotionReport:  # fmt: skip
    """The page's report: the snapshot's figures, its views cut to the date range (by default the 30 days up to
    today, ``now``); as of the snapshot's time."""
    api, redeemed, receipts = snap.api, snap.redeemed, snap.receipts
    start, end = date_range(ctx, now, api, start, end)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    rows = {d: DayRow(d) for d in days}
    for key, n in snap.assigned_by_day.items():
        on = _in(key, start, end)
        if on is not None:
            rows[on].assigned += n
    for item in api["byDay"]:
        on = _in(item["date"], start, end)
        if on is not None:
            rows[on].shown = item["shown"]
            rows[on].redeemed = item["redeemed"]
            rows[on].returned = item["returns"]
    channels: dict[str, GroupRow] = {}
    stores: dict[str, GroupRow] = {}
    names = {s["storeExternalId"]: s.get("storeName") for s in api["byStore"] if s.get("storeExternalId")}

    def store_row(key: str | None) -> GroupRow:
        k = key or NO_STORE
        if k not in stores:
            stores[k] = GroupRow(k, (names.get(key) or "") if key else "")
        return stores[k]

    for c in redeemed:
        when = _in(c.day, start, end)
        if when is None:
            continue
        ch = channels.setdefault(c.kind, GroupRow(c.kind, c.kind))
        ch.redeemed += c.n
        ch.per_day[when] = ch.per_day.get(when, 0) + c.n
        st = store_row(c.store)
        st.redeemed += c.n
        st.per_day[when] = st.per_day.get(when, 0) + c.n
    for c in receipts:
        if _in(c.day, start, end) is None:
            continue
        st = store_row(c.store)
        if c.kind == RETURNED:
            st.returned += c.n
        else:
            st.receipts += c.n
    by_store = sorted(stores.values(), key=lambda s: (-s.redeemed, s.key == NO_STORE, s.key))
    return PromotionReport(
        id=pid, api=api, start=start, end=end, days=days, by_day=[rows[d] for d in days],
        by_channel=sorted(channels.values(), key=lambda c: c.key), by_store=by_store, as_of=snap.computed_at,
        live=live,
    )  # fmt: skip


async def promotion_report(
    conn: AsyncConnection, ctx: TenantContext, now: datetime, pid: uuid.UUID, start: date | None = None,
    end: date | None = None,
) -> PromotionReport:  # fmt: skip
    """The report counted now (a small promotion's page)."""
    return build(ctx, now, pid, await compute(conn, ctx, now, pid), start, end, live=True)


def store_series(report: PromotionReport) -> list[tuple[str, list[int]]]:
    """Redeemed per day of the busiest stores, the rest summed as 'other stores' (a chart stays readable)."""
    top = report.by_store[:TOP_STORES]
    out = [(s.key, [s.per_day.get(d, 0) for d in report.days]) for s in top]
    rest = report.by_store[TOP_STORES:]
    if rest:
        out.append(("other stores", [sum(s.per_day.get(d, 0) for s in rest) for d in report.days]))
    return out


def channel_series(report: PromotionReport) -> list[tuple[str, list[int]]]:
    return [(c.key, [c.per_day.get(d, 0) for d in report.days]) for c in report.by_channel]


# ----------------------------------------------------------------------------------------------- CSV

VIEWS = ("funnel", "by-day", "by-channel", "by-store")


def report_csv(report: PromotionReport, view: str) -> str:
    """One table of the page, with the time its data is as of on every row (ISO 8601, UTC)."""
    as_of = report.as_of.isoformat()
    if view == "funnel":
        a = report.api
        return csv_text(
            ["promotionId", "name", "assigned", "shown", "redeemed", "returned", "shownRate", "redemptionRate",
             "returnRate", "asOf"],
            [[str(report.id), report.name, a["assigned"], a["shown"], a["redeemed"], a["returns"],
              _ratio(a["shown"], a["assigned"]), a["redemptionRate"], _ratio(a["returns"], report.redeemed_ever), as_of]],
        )  # fmt: skip
    if view == "by-day":
        return csv_text(
            ["date", "assigned", "shown", "redeemed", "returned", "asOf"],
            [[r.day.isoformat(), r.assigned, r.shown, r.redeemed, r.returned, as_of] for r in report.by_day],
        )
    if view == "by-channel":
        return csv_text(
            ["channel", "redeemed", "from", "to", "asOf"],
            [[c.key, c.redeemed, report.start.isoformat(), report.end.isoformat(), as_of] for c in report.by_channel],
        )  # fmt: skip
    return csv_text(
        ["storeExternalId", "storeName", "redeemed", "receipts", "returned", "from", "to", "asOf"],
        [[s.key, s.name, s.redeemed, s.receipts, s.returned, report.start.isoformat(), report.end.isoformat(), as_of]
         for s in report.by_store],
    )  # fmt: skip


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def compare_csv(a: PromotionReport, b: PromotionReport) -> str:
    rows: list[list[Any]] = []
    for sa, sb in zip(a.funnel, b.funnel, strict=True):
        rows.append([sa.label.lower(), sa.value, sb.value, a.as_of.isoformat()])
    return csv_text(["figure", f"{a.name} ({a.id})", f"{b.name} ({b.id})", "asOf"], rows)
