"""The Reports page of a large promotion is read from a stored snapshot, computed by the worker's
``report_snapshot`` job with the API report's own code. Here every promotion counts as large
(``admin_report_inline_below=0``): no snapshot → "computing…" and a poll → after the job, the page's numbers equal
the API's report; a stale snapshot is shown with its as-of time and enqueues one refresh (however often the page is
opened); Refresh for marketers; CSV from the snapshot; tenant isolation. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.models import job, report_snapshot
from tests.server.admin._helpers import assign, contact, promotion, text_of
from tests.server.admin.conftest import Admin
from tests.server.admin.test_reports import _csv, _figure, _traffic


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_report_inline_below": 0, "admin_report_max_age_seconds": 300})


def _db(admin: Admin, query: Any) -> list[Any]:
    async def run() -> list[Any]:
        db = Database(admin.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.read() as conn:
                return list((await conn.execute(query)).all())
        finally:
            await db.dispose()

    return asyncio.run(run())


def _refreshes(admin: Admin, pid: str, *statuses: str) -> int:
    q = select(func.count()).where(job.c.kind == "report_snapshot", job.c.queue == f"report:{pid}")
    if statuses:
        q = q.where(job.c.status.in_(statuses))
    return int(_db(admin, q)[0][0])


def _run(admin: Admin, pid: str) -> int:
    """Run the due jobs; how many refreshes of ``pid`` have succeeded in all. (Counted per promotion, not per worker
    turn: the database is shared, and a job another test left queued may be due too.)"""
    admin.api.run_jobs()
    return _refreshes(admin, pid, "succeeded")


def _poll(b: Any, pid: str, after: str = "") -> Any:
    r = b.get(f"/admin/reports/{pid}/snapshot", params={"after": after}, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    return r


def test_no_snapshot_computes_in_the_background_and_then_equals_the_api(admin: Admin) -> None:
    t = _traffic(admin)
    pid, api = t["pid"], t["api"]
    viewer = admin.browser("viewer")
    page = viewer.get(f"/admin/reports/{pid}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Computing a fresh report… (started at 2026-03-11 13:00 Europe/Stockholm" in text
    assert 'data-figure="assigned"' not in page.text and 'hx-trigger="every 2s"' in page.text
    assert _refreshes(admin, pid, "queued") == 1
    # A CSV before the first snapshot leads to the page (which says it is computing).
    r = viewer.get(f"/admin/reports/{pid}/funnel.csv", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/admin/reports/{pid}")
    poll = _poll(viewer, pid)
    assert "HX-Refresh" not in poll.headers and "Computing a fresh report" in text_of(poll.text)

    assert _run(admin, pid) == 1
    assert _poll(viewer, pid).headers.get("HX-Refresh") == "true"
    # The stored snapshot is the API's report at the job's time, field for field.
    (stored,) = _db(admin, select(report_snapshot.c.payload, report_snapshot.c.computed_at).where(
        report_snapshot.c.promotion_id == uuid.UUID(pid)))  # fmt: skip
    assert stored.payload["api"] == api
    assert stored.payload["assignedByDay"] == {"2026-03-10": 3, "2026-03-11": 1}

    page = viewer.get(f"/admin/reports/{pid}")
    html = page.text
    assert [_figure(html, f) for f in ("assigned", "shown", "redeemed", "returned")] == [4, 2, 3, 1]
    assert "Data as of 2026-03-11 13:00 Europe/Stockholm (a stored snapshot" in text_of(html)
    assert "Computing a fresh report" not in text_of(html) and "Refresh</button>" not in html  # a viewer
    funnel = _csv(viewer.get(f"/admin/reports/{pid}/funnel.csv"))
    assert [(r["assigned"], r["shown"], r["redeemed"], r["returned"]) for r in funnel] == [
        ("4", "2", "3", "1")
    ]
    assert funnel[0]["asOf"] == "2026-03-11T12:00:00+00:00"
    stores = {r["storeExternalId"]: (int(r["redeemed"]), int(r["receipts"]), int(r["returned"]))
              for r in _csv(viewer.get(f"/admin/reports/{pid}/by-store.csv"))}  # fmt: skip
    assert stores == {
        s["storeExternalId"]: (s["redeemed"], s["receipts"], s["returns"]) for s in api["byStore"]
    }
    # A date range cuts the snapshot's per-day rows, not the funnel.
    rng = {"from": "2026-03-10", "to": "2026-03-10"}
    assert _figure(viewer.get(f"/admin/reports/{pid}", params=rng).text, "redeemed") == 3
    days = _csv(viewer.get(f"/admin/reports/{pid}/by-day.csv", params=rng))
    assert [(r["date"], r["assigned"], r["redeemed"]) for r in days] == [("2026-03-10", "3", "0")]
    assert _refreshes(admin, pid) == 1  # fresh: no other refresh was asked for


def test_a_stale_snapshot_is_shown_with_its_time_and_refreshed_once(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    viewer = admin.browser("viewer")
    viewer.get(f"/admin/reports/{pid}")
    assert _run(admin, pid) == 1
    admin.api.clock.advance(timedelta(minutes=4))
    assert "Computing a fresh report" not in text_of(
        viewer.get(f"/admin/reports/{pid}").text
    )  # not stale yet
    assert _refreshes(admin, pid, "queued") == 0
    admin.api.clock.advance(timedelta(minutes=2))  # now 6 minutes old
    assign(admin.api, contact(admin.api, email="late@example.com"), pid)
    for _ in range(3):  # opened again and again: one refresh
        text = text_of(viewer.get(f"/admin/reports/{pid}").text)
        assert "Data as of 2026-03-11 13:00 Europe/Stockholm" in text
        assert "Computing a fresh report… (started at 2026-03-11 13:06 Europe/Stockholm" in text
    assert _refreshes(admin, pid, "queued") == 1
    page = viewer.get(f"/admin/reports/{pid}")
    assert _figure(page.text, "assigned") == 4  # the old snapshot meanwhile
    assert "HX-Refresh" not in _poll(viewer, pid, "2026-03-11T12:00:00+00:00").headers
    assert _run(admin, pid) == 2
    assert _poll(viewer, pid, "2026-03-11T12:00:00+00:00").headers.get("HX-Refresh") == "true"
    page = viewer.get(f"/admin/reports/{pid}")
    assert _figure(page.text, "assigned") == 5
    assert "Data as of 2026-03-11 13:06 Europe/Stockholm" in text_of(page.text)
    assert admin.api.get(f"/api/v2/reports/promotions/{pid}").json()["assigned"] == 5


def test_marketers_refresh_viewers_do_not(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    viewer, marketer = admin.browser("viewer"), admin.browser("marketer")
    viewer.get(f"/admin/reports/{pid}")
    assert _run(admin, pid) == 1
    assert viewer.post(f"/admin/reports/{pid}/refresh").status_code == 403
    page = marketer.get(f"/admin/reports/{pid}").text
    assert "Refresh</button>" in page
    assert marketer.post(f"/admin/reports/{pid}/refresh", csrf=False).status_code in (400, 403)
    assert _refreshes(admin, pid, "queued") == 0
    for _ in range(2):
        r = marketer.post(f"/admin/reports/{pid}/refresh", {"range": "from=2026-03-10&to=2026-03-11"})
        assert (
            r.status_code == 303
            and r.headers["location"] == f"/admin/reports/{pid}?from=2026-03-10&to=2026-03-11"
        )
    assert _refreshes(admin, pid, "queued") == 1
    page = marketer.get(f"/admin/reports/{pid}").text
    assert "Refresh</button>" not in page and "Computing a fresh report" in text_of(page)
    assert _run(admin, pid) == 2


def test_snapshots_stay_in_their_tenant(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    admin.browser("viewer").get(f"/admin/reports/{pid}")
    assert _run(admin, pid) == 1
    other = admin.api.new_tenant()
    theirs = admin.browser("marketer", other)
    for path in (
        f"/admin/reports/{pid}",
        f"/admin/reports/{pid}/snapshot",
        f"/admin/reports/{pid}/funnel.csv",
    ):
        assert theirs.get(path).status_code == 404, path
    assert theirs.post(f"/admin/reports/{pid}/refresh").status_code == 404
    assert _refreshes(admin, pid) == 1
    mine = promotion(
        admin.api.__class__(admin.api.client, admin.api.clock, other, admin.api.settings), "Theirs"
    )
    r = theirs.get(f"/admin/reports/{mine}")
    assert r.status_code == 200 and "Computing a fresh report" in text_of(r.text)
    assert _run(admin, mine) == 1  # run here: left queued, it would be due in the next test on this database


def test_comparing_waits_for_both_snapshots(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    other = promotion(admin.api, "Autumn", start="2026-03-01", end="2026-03-31")
    assign(admin.api, contact(admin.api, email="solo@example.com"), other)
    viewer = admin.browser("viewer")
    page = viewer.get("/admin/reports/compare", params={"a": pid, "b": other})
    text = text_of(page.text)
    assert page.status_code == 200 and "Computing a fresh report" in text
    assert "<h1>Compare: Spring and Autumn</h1>" in page.text and "“Spring” is a large promotion" in text
    r = viewer.get("/admin/reports/compare.csv", params={"a": pid, "b": other}, follow_redirects=False)
    assert r.status_code == 303
    admin.api.run_jobs()
    # one refresh per promotion, the CSV's redirect added none (how many worker turns that took is not the point)
    assert _refreshes(admin, pid) == 1 and _refreshes(admin, other) == 1
    assert _refreshes(admin, pid, "succeeded") == 1 and _refreshes(admin, other, "succeeded") == 1
    rows = _csv(viewer.get("/admin/reports/compare.csv", params={"a": pid, "b": other}))
    assert [(r["figure"], *list(r.values())[1:3]) for r in rows] == [
        ("assigned", "4", "1"), ("shown", "2", "0"), ("redeemed", "3", "0"), ("returned", "1", "0")]  # fmt: skip
    text = text_of(viewer.get("/admin/reports/compare", params={"a": pid, "b": other}).text)
    assert "Data as of 2026-03-11 13:00 Europe/Stockholm (a stored snapshot of the report)" in text
    assert "for A" not in text and "Computing a fresh report" not in text
    # B refreshed two minutes later: each as-of time is said. Four more minutes: A is stale, the comparison
    # shows its stored figures meanwhile, refreshes A only and reloads once the new one is stored.
    admin.api.clock.advance(timedelta(minutes=2))
    assign(admin.api, contact(admin.api, email="late@example.com"), other)
    assert admin.browser("marketer").post(f"/admin/reports/{other}/refresh").status_code == 303
    assert _run(admin, other) == 2
    page = viewer.get("/admin/reports/compare", params={"a": pid, "b": other})
    text = text_of(page.text)
    assert ("Data as of 2026-03-11 13:00 Europe/Stockholm (a stored snapshot of the report) for A and "
            "2026-03-11 13:02 Europe/Stockholm (a stored snapshot of the report) for B") in text  # fmt: skip
    assert "Assigned 4 2" in text and "Computing a fresh report" not in text
    admin.api.clock.advance(timedelta(minutes=4))
    page = viewer.get("/admin/reports/compare", params={"a": pid, "b": other})
    text = text_of(page.text)
    assert "Computing a fresh report… (started at 2026-03-11 13:06 Europe/Stockholm" in text
    assert "Assigned 4 2" in text and page.text.count('id="report-refresh"') == 1
    assert f'hx-get="/admin/reports/{pid}/snapshot?after=2026-03-11T12%3A00%3A00%2B00%3A00"' in page.text
    assert _refreshes(admin, pid, "queued") == 1 and _refreshes(admin, other, "queued") == 0
    assert _run(admin, pid) == 2
    assert _poll(viewer, pid, "2026-03-11T12:00:00+00:00").headers.get("HX-Refresh") == "true"
