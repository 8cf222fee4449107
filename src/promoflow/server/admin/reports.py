"""Reports: a promotion's funnel (Assigned → Shown → Redeemed → Returned), its views per day, channel and store
with charts and CSV, and two promotions side by side. Every role may read them."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi import Depends, Request
from starlette.responses import Response

from ...kit.guid import parse_guid
from ..exceptions import NotFoundError
from ..http.edge import state_of
from ..receipt import shown
from . import gateway, reporting
from .charts import line_chart
from .common import admin_router, guid_or_404, now_of, reading
from .sessions import AdminContext
from .web import SECURITY_HEADERS, render, viewer

router = admin_router()


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value else None
    except ValueError:
        return None


async def _report(request: Request, who: AdminContext, pid: uuid.UUID) -> reporting.PromotionReport:
    q = request.query_params
    await shown.flush_shown(
        state_of(request)
    )  # this process's buffered fetches count, as in the API's report
    async with reading(request) as conn:
        return await reporting.promotion_report(conn, who.tenant, now_of(request), pid, _day(q.get("from")),
                                                _day(q.get("to")))  # fmt: skip


def _range_query(report: reporting.PromotionReport) -> str:
    return f"from={report.start.isoformat()}&to={report.end.isoformat()}"


def _csv(text: str, name: str) -> Response:
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'}
    return Response(text.encode("utf-8"), 200, media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/reports")
async def reports_home(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    """Pick a promotion (and optionally a second one to compare with) and a date range."""
    q = request.query_params
    first, second = parse_guid(q.get("promotion") or ""), parse_guid(q.get("compare") or "")
    rng = "&".join(f"{k}={d.isoformat()}" for k in ("from", "to") if (d := _day(q.get(k))) is not None)
    if first is not None and second is not None and first != second:
        return Response(
            status_code=303, headers={"Location": f"/admin/reports/compare?a={first}&b={second}&{rng}"}
        )
    if first is not None:
        return Response(status_code=303, headers={"Location": f"/admin/reports/{first}?{rng}"})
    async with reading(request) as conn:
        choices = await gateway.promotion_choices(conn, who.tenant, now_of(request))
    return render(request, "reports.html", section="reports", choices=choices)


@router.get("/reports/compare")
async def compare(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params
    a = await _report(request, who, guid_or_404(q.get("a") or "", "promotion"))
    b = await _report(request, who, guid_or_404(q.get("b") or "", "promotion"))
    chart = line_chart("chart-compare", f"Redeemed per day: {a.name} and {b.name}", a.days,
                       [(f"A: {a.name}", [r.redeemed for r in a.by_day]),
                        (f"B: {b.name}", [r.redeemed for r in b.by_day])])  # fmt: skip
    rows = list(zip(a.by_day, b.by_day, strict=True))
    return render(request, "compare.html", section="reports", a=a, b=b, chart=chart, rows=rows,
                  range_query=_range_query(a))  # fmt: skip


@router.get("/reports/compare.csv")
async def compare_csv(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params
    a = await _report(request, who, guid_or_404(q.get("a") or "", "promotion"))
    b = await _report(request, who, guid_or_404(q.get("b") or "", "promotion"))
    return _csv(reporting.compare_csv(a, b), f"compare-{a.id}-{b.id}")


@router.get("/reports/{promotion_id}")
async def report_page(promotion_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    report = await _report(request, who, guid_or_404(promotion_id, "promotion"))
    charts: dict[str, Any] = {
        "day": line_chart("chart-day", "Assigned, shown and redeemed per day", report.days,
                          [("Assigned", [r.assigned for r in report.by_day]),
                           ("Shown", [r.shown for r in report.by_day]),
                           ("Redeemed", [r.redeemed for r in report.by_day])]),
        "channel": line_chart("chart-channel", "Redeemed per day by channel", report.days,
                              reporting.channel_series(report)) if report.by_channel else None,
        "store": line_chart("chart-store", "Redeemed per day by store", report.days,
                            reporting.store_series(report)) if report.by_store else None,
    }  # fmt: skip
    async with reading(request) as conn:
        choices = await gateway.promotion_choices(conn, who.tenant, now_of(request))
    return render(request, "report.html", section="reports", r=report, charts=charts, choices=choices,
                  range_query=_range_query(report), total=report.range_total())  # fmt: skip


@router.get("/reports/{promotion_id}/{view}.csv")
async def report_csv(
    promotion_id: str, view: str, request: Request, who: AdminContext = Depends(viewer)
) -> Response:
    if view not in reporting.VIEWS:
        raise NotFoundError("no such table")
    report = await _report(request, who, guid_or_404(promotion_id, "promotion"))
    return _csv(reporting.report_csv(report, view), f"promotion-{report.id}-{view}")
