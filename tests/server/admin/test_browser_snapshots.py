"""Report snapshots and Compare in a real browser (Debian's Chromium through pytest-playwright) against a real
`promoflow serve --no-worker` with ``PROMOFLOW_ADMIN_REPORT_INLINE_BELOW=5``: a promotion with five assignments or
more is reported from its stored snapshot. The test runs the worker itself (`promoflow worker --once`), so the
page's "computing" state lasts until it does; the page's own poll then reloads it (Playwright waits on the page,
never on a clock). On SQLite and PostgreSQL.

(a) first view "Computing a fresh report…" → the snapshot job → the page reloads with "Data as of … (a stored
    snapshot of the report)", every funnel number, the table per day (Returned included, also in the chart) and
    the CSVs equal to the scripted traffic; more traffic → Refresh → the new numbers;
(b) Compare: a small promotion (counted live) and a large one (its first snapshot computed meanwhile) side by
    side — funnels, the table per day and the CSVs equal to each one's traffic.

axe-core checks each state (no serious or critical violation). With PROMOFLOW_SCREENSHOTS_DIR set, the tests save
the screenshots docs/admin-ui.md shows.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import pg_database
from tests.server.admin.conftest import CHROMIUM
from tests.server.admin.test_browser import Site, axe_check, prepare_site, shot, sign_in
from tests.server.admin.test_browser_reports import TZ, _assign, _contact, _promotion
from tests.server.receipt.conftest import item, receipt_body
from tests.support.servers import start_server

pytestmark = pytest.mark.browser

AS_OF = re.compile(
    r"Data as of (\d{4}-\d\d-\d\d \d\d:\d\d) Europe/Stockholm \(a stored snapshot of the report\)"
)
FIGURES = ("assigned", "shown", "redeemed", "returned")


class SnapshotSite(Site):
    """The site, and its database and data dir for the worker the test runs."""

    def __init__(self, *args: Any, database_url: str, data_dir: Path) -> None:
        super().__init__(*args)
        self.database_url = database_url
        self.data_dir = data_dir

    def run_worker(self) -> None:
        """`promoflow worker --once`: every due job (here, the report snapshots asked for), then exit."""
        done = subprocess.run(
            [sys.executable, "-m", "promoflow.cli", "worker", "--once", "--database-url", self.database_url,
             "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnapshotSite]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    data = tmp_path_factory.mktemp("browser-snapshots")
    with ExitStack() as stack:
        # Its own database: the worker the test runs takes every due job it finds.
        url = (
            stack.enter_context(pg_database("promoflow_browser"))
            if request.param == "postgres"
            else f"sqlite:///{data / 'browser.sqlite3'}"
        )
        tenant, email, password = prepare_site(url, data, "marketer", "marketer@example.com")
        server = start_server(url, data, "--no-ftp", "--no-worker",
                              env={"PROMOFLOW_ADMIN_REPORT_INLINE_BELOW": "5"})  # fmt: skip
        stack.callback(server.stop)
        yield SnapshotSite(server, tenant, email, password, database_url=url, data_dir=data)


def _traffic(api: Any, pid: str, *, assigned: int, shown: int, redeemed: int, returned: int) -> Counter[Any]:
    """Through the API, as the tills do: ``assigned`` new contacts get the promotion, the first ``shown`` of them
    fetch it at the POS, the first ``redeemed`` redeem it — by a sale receipt in store S2 for the first
    ``returned`` (each then returned), at the till in store S1 for the others. What was done, per figure and per
    (figure, local day)."""
    tag = uuid.uuid4().hex[:6]
    emails = [f"t{i}-{tag}@example.com" for i in range(assigned)]
    cids = [_contact(api, e) for e in emails]
    coupons = [_assign(api, c, pid) for c in cids]
    done: Counter[Any] = Counter(assigned=assigned, shown=shown, redeemed=redeemed, returned=returned)
    done[("assigned", datetime.now(TZ).date())] += assigned
    for cid, coupon in zip(cids[:shown], coupons, strict=False):
        found = api.get(f"/api/v2/contacts/{cid}/promotions", params={"redemptionChannelType": "POS"})
        assert [i["id"] for i in found.json()] == [coupon], found.text
    done[("shown", datetime.now(TZ).date())] += shown
    for i in range(redeemed):
        if i < returned:
            sold = (datetime.now(TZ) - timedelta(minutes=2)).replace(microsecond=0)
            sale = receipt_body(key=emails[i], used=[{"couponId": coupons[i]}], store="S2", created=sold)
            assert api.post("/api/v2/receipts", json=sale).status_code == 200
            back = receipt_body(key=emails[i], store="S2", created=sold + timedelta(minutes=1),
                                items=[item("100.00", sku="A", qty=-1, type_="RETURN")],
                                originalUniqueReceiptId=sale["uniqueReceiptId"])  # fmt: skip
            assert api.post("/api/v2/receipts", json=back).status_code == 200
            done[("redeemed", sold.date())] += 1
            done[("returned", (sold + timedelta(minutes=1)).date())] += 1
        else:
            r = api.post(f"/api/v2/promotions/codes/{coupons[i]}/redeem",
                         json={"redemptionChannel": "POS", "storeExternalId": "S1"})  # fmt: skip
            assert r.status_code == 200, r.text
            done[("redeemed", datetime.now(TZ).date())] += 1
    return done


def _api_figures(api: Any, pid: str) -> list[int]:
    report = api.get(f"/api/v2/reports/promotions/{pid}").json()
    return [report["assigned"], report["shown"], report["redeemed"], report["returns"]]


def _day_row(done: Counter[Any], day: date) -> list[str]:
    return [str(done[(f, day)]) for f in FIGURES]


def _csv_of(page: Any, link: Any) -> list[dict[str, str]]:
    with page.expect_download() as info:
        link.click()
    return list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))


def _check_report(page: Any, done: Counter[Any]) -> str:
    """The page's funnel, table per day, chart and CSVs equal ``done``; returns the CSVs' as-of (ISO 8601)."""
    from playwright.sync_api import expect

    for name in FIGURES:
        expect(page.locator(f'[data-figure="{name}"]')).to_have_text(str(done[name]))
    days = sorted({k[1] for k in done if isinstance(k, tuple)})
    for day in days:
        row = page.locator("#table-day tbody tr").filter(has_text=day.isoformat())
        expect(row.locator("td")).to_have_text(_day_row(done, day))
    chart = page.locator("#chart-day")
    for label in ("Assigned", "Shown", "Redeemed", "Returned"):  # a line each, named in the legend
        expect(chart.locator("text", has_text=re.compile(f"^{label}$"))).to_have_count(1)
    expect(chart.locator("polyline")).to_have_count(4)
    links = page.get_by_role("link", name="Download CSV")
    (funnel,) = _csv_of(page, links.nth(0))
    assert [funnel[f] for f in FIGURES] == [str(done[f]) for f in FIGURES]
    by_day = {r["date"]: r for r in _csv_of(page, links.nth(1))}
    for day in days:
        assert [by_day[day.isoformat()][f] for f in FIGURES] == _day_row(done, day)
    assert {r["asOf"] for r in by_day.values()} == {funnel["asOf"]}
    return funnel["asOf"]


def test_a_large_promotion_is_computed_then_shown_from_its_snapshot_and_refreshed(
    page: Any,
    site: SnapshotSite,
) -> None:
    from playwright.sync_api import expect

    with site.api() as api:
        pid = _promotion(api, "Big shirts")
        done = _traffic(api, pid, assigned=6, shown=4, redeemed=3, returned=1)
        assert _api_figures(api, pid) == [6, 4, 3, 1]
    sign_in(page, site)
    page.get_by_role("link", name="Reports").click()
    page.get_by_label("Promotion").select_option(pid)
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Report: Big shirts")
    status = page.locator("#report-refresh")
    expect(status).to_contain_text(re.compile(
        r"Computing a fresh report… \(started at \d{4}-\d\d-\d\d \d\d:\d\d Europe/Stockholm\)\. "
        "This page reloads when it is ready."))  # fmt: skip
    expect(status).to_have_attribute("hx-trigger", "every 2s")  # it polls
    expect(page.locator("[data-figure]")).to_have_count(0)
    axe_check(page)
    shot(page, "report-computing")

    site.run_worker()  # the snapshot job; the page, still polling, sees it stored and reloads itself
    as_of = page.locator("#as-of")
    expect(as_of).to_contain_text(AS_OF, timeout=30_000)
    expect(page.get_by_role("button", name="Refresh")).to_be_visible()
    stamp = _check_report(page, done)
    shown_at = AS_OF.search(as_of.inner_text())
    assert shown_at and shown_at.group(1) == f"{datetime.fromisoformat(stamp).astimezone(TZ):%Y-%m-%d %H:%M}"
    axe_check(page)
    shot(page, "report-snapshot")

    # More traffic: the snapshot still says what it said, until Refresh and the next snapshot.
    with site.api() as api:
        more = _traffic(api, pid, assigned=2, shown=1, redeemed=2, returned=1)
        assert _api_figures(api, pid) == [8, 5, 5, 2]
    page.get_by_role("button", name="Refresh").click()
    expect(status).to_contain_text("Computing a fresh report…")
    expect(page.get_by_role("button", name="Refresh")).to_have_count(0)  # one refresh at a time
    expect(status).to_have_attribute("hx-trigger", "every 2s")
    expect(page.locator('[data-figure="assigned"]')).to_have_text("6")
    axe_check(page)
    site.run_worker()
    expect(page.locator('[data-figure="assigned"]')).to_have_text("8", timeout=30_000)
    expect(status).not_to_contain_text("Computing")
    assert datetime.fromisoformat(_check_report(page, done + more)) > datetime.fromisoformat(stamp)


def test_two_promotions_side_by_side(page: Any, site: SnapshotSite) -> None:
    from playwright.sync_api import expect

    with site.api() as api:
        a = _promotion(api, "Spring coats")
        b = _promotion(api, "Autumn boots")
        done_a = _traffic(api, a, assigned=4, shown=2, redeemed=1, returned=0)  # counted at each view
        done_b = _traffic(api, b, assigned=5, shown=4, redeemed=2, returned=1)  # from a snapshot
        assert (_api_figures(api, a), _api_figures(api, b)) == ([4, 2, 1, 0], [5, 4, 2, 1])
    sign_in(page, site)
    page.get_by_role("link", name="Reports").click()
    page.get_by_label("Promotion").select_option(a)
    page.get_by_label("Compare with").select_option(b)
    page.get_by_role("button", name="Show report").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Compare: Spring coats and Autumn boots")
    expect(page.locator("#report-refresh")).to_contain_text("Computing a fresh report…")
    expect(page.locator("main")).to_contain_text("“Autumn boots” is a large promotion")
    axe_check(page)

    site.run_worker()
    table = page.locator("#table-compare")
    expect(table).to_be_visible(timeout=30_000)
    expect(heading).to_have_text("Compare: Spring coats and Autumn boots")
    expect(page.locator("#as-of")).to_contain_text(re.compile(
        r"Data as of \d{4}-\d\d-\d\d \d\d:\d\d Europe/Stockholm for A and "
        r"\d{4}-\d\d-\d\d \d\d:\d\d Europe/Stockholm \(a stored snapshot of the report\) for B"))  # fmt: skip
    rows = table.locator("tbody tr")
    expect(rows.locator("th")).to_have_text(["Assigned", "Shown", "Redeemed", "Returned"])
    for n, cells in enumerate([["4", "5"], ["2 (50.0 % of assigned)", "4 (80.0 % of assigned)"],
                               ["1 (25.0 % of assigned)", "2 (40.0 % of assigned)"],
                               ["0 (0.0 % of redeemed)", "1 (50.0 % of redeemed)"]]):  # fmt: skip
        expect(rows.nth(n).locator("td")).to_have_text(cells)
    days = sorted({k[1] for k in done_a + done_b if isinstance(k, tuple)})
    for day in days:
        row = page.locator("#table-compare-day tbody tr").filter(has_text=day.isoformat())
        expect(row.locator("td")).to_have_text(_day_row(done_a, day) + _day_row(done_b, day))
    expect(page.locator("#chart-compare")).to_be_visible()
    axe_check(page)
    shot(page, "compare")

    links = page.get_by_role("link", name="Download CSV")
    side = {r["figure"]: list(r.values())[1:3] for r in _csv_of(page, links.nth(0))}
    assert side == {f: [str(done_a[f]), str(done_b[f])] for f in FIGURES}
    for n, done in ((1, done_a), (2, done_b)):
        by_day = {r["date"]: r for r in _csv_of(page, links.nth(n))}
        for day in days:
            assert [by_day[day.isoformat()][f] for f in FIGURES] == _day_row(done, day)
