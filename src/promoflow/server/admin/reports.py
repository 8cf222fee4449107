"""Reports: a promotion's funnel (Assigned → Shown → Redeemed → Returned), its views per day, channel and store
with charts and CSV, and two promotions side by side. Every role may read them; a marketer may ask for a refresh.

A small promotion is counted at each view; a large one is shown from its stored snapshot (`snapshots.py`), which
the page refreshes in the background when it is stale and polls for (htmx) until the new one is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from starlette.responses import Response

from ...kit.guid import parse_guid
from ...kit.timeutil import filter_day
from ..exceptions import NotFoundError
from ..http.edge import state_of
from ..receipt import shown
from . import gateway, reporting, snapshots
from .charts import line_chart
from .common import admin_router, guid_or_404, now_of, reading, wake_worker, writing
from .sessions import AdminContext
from .users import Role
from .web import SECURITY_HEADERS, is_htmx, marketer, render, viewer

router = admin_router()


@dataclass
class View:
    """A promotion's report for the page: the figures (None while the first snapshot is computed), the refresh
    under way and the last refresh's failure, if any."""

    pid: uuid.UUID
    report: reporting.PromotionReport | None
    pending: snapshots.Pending | None = None
    failure: str | None = None


async def _view(request: Request, who: AdminContext, pid: uuid.UUID, *, refresh: bool = False) -> View:
    st = state_of(request)
    now, ctx, q = now_of(request), who.tenant, request.query_params
    start, end = filter_day(q.get("from")), filter_day(q.get("to"))
    async with reading(request) as conn:
        await snapshots.ensure_promotion(conn, ctx, pid)
        small = await snapshots.is_small(conn, ctx, pid, st.settings.admin_report_inline_below)
        if not small:
            snap = await snapshots.load(conn, ctx, pid)
            pend = await snapshots.pending(conn, ctx, pid)
    if small:
        await shown.flush_shown(st)  # this process's buffered fetches count, as in the API's report
        async with reading(request) as conn:
            return View(pid, await reporting.promotion_report(conn, ctx, now, pid, start, end))
    max_age = st.settings.admin_report_max_age_seconds
    if pend is None and (refresh or snap is None or (now - snap.computed_at).total_seconds() > max_age):
        await shown.flush_shown(st)
        async with writing(request) as conn:
            pend = await snapshots.request_refresh(conn, ctx, pid, now)
        wake_worker(request)
    async with reading(request) as conn:
        failure = await snapshots.last_failure(conn, ctx, pid) if pend is None else None
    report = None if snap is None else reporting.build(ctx, now, pid, snap, start, end)
    return View(pid, report, pend, failure)


def _pending_page(request: Request, view: View, name: str, heading: str) -> Response:
    """While the first snapshot of ``view``'s promotion (``name``) is computed: says so, and polls."""
    return render(request, "report_pending.html", section="reports", v=view, promo_name=name, heading=heading,
                  refresh=_refresh_values(view, None))  # fmt: skip


def _refresh_values(view: View, after: str | None) -> dict[str, Any]:
    p = view.pending
    return {
        "pid": view.pid,
        "after": after or "",
        "pending": p is not None,
        "started": p.created_at if p else None,
        "failure": view.failure,
    }


async def _name(request: Request, who: AdminContext, pid: uuid.UUID) -> str:
    async with reading(request) as conn:
        return await snapshots.promotion_name(conn, who.tenant, pid)


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
    rng = "&".join(f"{k}={d.isoformat()}" for k in ("from", "to") if (d := filter_day(q.get(k))) is not None)
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
    va = await _view(request, who, guid_or_404(q.get("a") or "", "promotion"))
    vb = await _view(request, who, guid_or_404(q.get("b") or "", "promotion"))
    a, b = va.report, vb.report
    if a is None or b is None:
        name_a, name_b = await _name(request, who, va.pid), await _name(request, who, vb.pid)
        wait, name = (va, name_a) if a is None else (vb, name_b)
        return _pending_page(request, wait, name, f"Compare: {name_a} and {name_b}")
    chart = line_chart("chart-compare", f"Redeemed per day: {a.name} and {b.name}", a.days,
                       [(f"A: {a.name}", [r.redeemed for r in a.by_day]),
                        (f"B: {b.name}", [r.redeemed for r in b.by_day])])  # fmt: skip
    rows = list(zip(a.by_day, b.by_day, strict=True))
    # A stale snapshot is being refreshed: the page says so and reloads when the new one is stored.
    busy = next((v for v in (va, vb) if v.pending is not None), None)
    refresh = _refresh_values(busy, busy.report.as_of.isoformat()) if busy and busy.report else None
    return render(request, "compare.html", section="reports", a=a, b=b, chart=chart, rows=rows,
                  range_query=_range_query(a), refresh=refresh)  # fmt: skip


@router.get("/reports/compare.csv")
async def compare_csv(request: Request, who: AdminContext = Depends(viewer)) -> Response:
    q = request.query_params
    va = await _view(request, who, guid_or_404(q.get("a") or "", "promotion"))
    vb = await _view(request, who, guid_or_404(q.get("b") or "", "promotion"))
    a, b = va.report, vb.report
    if a is None or b is None:  # the first snapshot is being computed: the page says so, and polls
        return Response(status_code=303, headers={"Location": f"/admin/reports/compare?{request.url.query}"})
    return _csv(reporting.compare_csv(a, b), f"compare-{a.id}-{b.id}")


@router.get("/reports/{promotion_id}")
async def report_page(promotion_id: str, request: Request, who: AdminContext = Depends(viewer)) -> Response:
    view = await _view(request, who, guid_or_404(promotion_id, "promotion"))
    report = view.report
    if report is None:
        name = await _name(request, who, view.pid)
        return _pending_page(request, view, name, f"Report: {name}")
    charts: dict[str, Any] = {
        "day": line_chart("chart-day", "Assigned, shown, redeemed and returned per day", report.days,
                          [("Assigned", [r.assigned for r in report.by_day]),
                           ("Shown", [r.shown for r in report.by_day]),
                           ("Redeemed", [r.redeemed for r in report.by_day]),
                           ("Returned", [r.returned for r in report.by_day])]),
        "channel": line_chart("chart-channel", "Redeemed per day by channel", report.days,
                              reporting.channel_series(report)) if report.by_channel else None,
        "store": line_chart("chart-store", "Redeemed per day by store", report.days,
                            reporting.store_series(report)) if report.by_store else None,
    }  # fmt: skip
    async with reading(request) as conn:
        choices = await gateway.promotion_choices(conn, who.tenant, now_of(request))
    refresh = _refresh_values(view, report.as_of.isoformat())
    return render(request, "report.html", section="reports", r=report, charts=charts, choices=choices,
                  range_query=_range_query(report), total=report.range_total(), refresh=refresh,
                  can_refresh=who.can(Role.MARKETER), range_note=_range_note(request, report))  # fmt: skip


def _range_note(request: Request, report: reporting.PromotionReport) -> str:
    """What became of the days asked for, when the page shows others: never a silent change."""
    asked = {k: (request.query_params.get(k) or "").strip() for k in ("from", "to")}
    given = {k: filter_day(v) for k, v in asked.items()}
    notes = [
        f"“{v}” is not a date (YYYY-MM-DD), so it was left out"
        for k, v in asked.items()
        if v and not given[k]
    ]
    start, end = given["from"], given["to"]
    if start and end and start > end:
        notes.append("From came after To, so the two were swapped")
    if start and end and abs((end - start).days) >= reporting.MAX_DAYS:
        notes.append(f"a range is at most {reporting.MAX_DAYS} days, so it was shortened to the last of them")
    if not notes:
        return ""
    return f"Showing {report.start.isoformat()} to {report.end.isoformat()}: " + "; ".join(notes) + "."


@router.get("/reports/{promotion_id}/{view}.csv")
async def report_csv(
    promotion_id: str, view: str, request: Request, who: AdminContext = Depends(viewer)
) -> Response:
    if view not in reporting.VIEWS:
        raise NotFoundError("no such table")
    v = await _view(request, who, guid_or_404(promotion_id, "promotion"))
    report = v.report
    if report is None:  # the first snapshot is being computed: the page says so, and polls
        return Response(status_code=303, headers={"Location": f"/admin/reports/{v.pid}?{request.url.query}"})
    return _csv(reporting.report_csv(report, view), f"promotion-{report.id}-{view}")


@router.post("/reports/{promotion_id}/refresh")
async def refresh(promotion_id: str, request: Request, who: AdminContext = Depends(marketer)) -> Response:
    """Ask for a fresh snapshot now (one per promotion at a time); back to the page, which polls for it."""
    pid = guid_or_404(promotion_id, "promotion")
    await _view(request, who, pid, refresh=True)
    back = f"/admin/reports/{pid}"
    form_range = (await request.form()).get("range")
    if isinstance(form_range, str) and form_range.startswith("from="):
        back += f"?{form_range}"
    return Response(status_code=303, headers={"Location": back})


@router.get("/reports/{promotion_id}/snapshot")
async def snapshot_state(
    promotion_id: str, request: Request, who: AdminContext = Depends(viewer)
) -> Response:
    """The page's poll: once a snapshot newer than the one shown (``after``) is stored, the page reloads."""
    pid = guid_or_404(promotion_id, "promotion")
    after = request.query_params.get("after") or ""
    ctx = who.tenant
    async with reading(request) as conn:
        await snapshots.ensure_promotion(conn, ctx, pid)
        at = await snapshots.computed_at(conn, ctx, pid)
        pend = await snapshots.pending(conn, ctx, pid)
        failure = await snapshots.last_failure(conn, ctx, pid) if pend is None else None
    view = View(pid, None, pend, failure)
    response = render(request, "_report_refresh.html", refresh=_refresh_values(view, after))
    if at is not None and at.isoformat() != after and is_htmx(request):
        response.headers["HX-Refresh"] = "true"
    return response
