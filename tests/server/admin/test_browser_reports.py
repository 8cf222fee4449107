"""Imports and Reports in a real browser (Debian's Chromium through pytest-playwright) against a real
`promoflow serve` with its FTP server, both on free loopback ports:

(a) upload a redemption file over FTP → watch the import finish in Imports (the list polls) → open its line
    results, filter them → download the result file;
(b) scripted traffic through the API (assign, fetch, redeem, a receipt that redeems and its return) → Reports →
    every number of the funnel and of the CSV downloads equals what was done.

axe-core checks every page (no serious or critical violation). With PROMOFLOW_SCREENSHOTS_DIR set, the tests save
the screenshots docs/admin-ui.md shows.
"""

from __future__ import annotations

import csv
import ftplib
import io
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest

from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, write_redemptions
from tests.server.admin.conftest import CHROMIUM
from tests.server.admin.test_browser import Site, axe_check, prepare_site, shot, sign_in
from tests.server.receipt.conftest import item, receipt_body
from tests.support.servers import start_server

pytestmark = pytest.mark.browser

TZ = ZoneInfo("Europe/Stockholm")
NAME = "20260310120000_7_redemptions.xml"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    data = tmp_path_factory.mktemp("browser-reports")
    url = f"sqlite:///{data / 'browser.sqlite3'}"
    tenant, email, password = prepare_site(url, data, "viewer", "viewer@example.com")
    server = start_server(url, data)  # with its FTP server on a free port
    try:
        yield Site(server, tenant, email, password)
    finally:
        server.stop()


def _promotion(api: Any, name: str) -> str:
    today = datetime.now(TZ).date()
    body = {
        "name": name,
        "validity": {"startDate": (today - timedelta(days=1)).isoformat(),
                     "endDate": (today + timedelta(days=30)).isoformat()},
        "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "10"},
                               {"type": "ECOM", "valueType": "PERCENT", "value": "10"}],
    }  # fmt: skip
    r = api.post("/api/v2/promotions/multichannels", json=body)
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    assert api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
    return pid


def _contact(api: Any, email: str) -> str:
    r = api.post("/api/v2/contacts", json={"email": email})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _assign(api: Any, cid: str, pid: str) -> str:
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_an_ftp_upload_is_watched_to_the_end_and_its_results_downloaded(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    with site.api() as api:
        pid = _promotion(api, "File redemptions")
        coupon = _assign(api, _contact(api, f"f-{uuid.uuid4().hex[:8]}@example.com"), pid)
    unknown = str(uuid.uuid4())
    now = datetime.now(TZ)
    data = write_redemptions([Redemption(coupon_id=c, redemption_channel="POS", redeemed_on=now, store_external_id="S1")
                              for c in (coupon, unknown)])  # fmt: skip
    sign_in(page, site)
    page.get_by_role("link", name="Imports").click()
    page.wait_for_url("**/admin/imports")
    axe_check(page)

    ftp_url = urlparse(site.server.ftp_url or "")
    client = ftplib.FTP()
    client.connect(ftp_url.hostname or "127.0.0.1", ftp_url.port or 21, timeout=30)
    client.login(site.tenant["ftpUser"], site.tenant["ftpPassword"])
    try:
        assert client.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/{NAME}", io.BytesIO(data)).startswith("226")
    finally:
        client.quit()

    # The list page, left open, shows the file and then its end: the worker imports it meanwhile.
    page.reload()
    row = page.locator("#imports-table tbody tr").filter(has_text=NAME)
    expect(row).to_contain_text("Imported", timeout=30_000)
    expect(row).to_contain_text("applied 1 · not found 1")
    axe_check(page)
    shot(page, "imports")

    row.get_by_role("link", name=NAME).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    expect(page.locator("#import-status")).to_contain_text("Imported")
    results = page.locator("#records-table")
    expect(results).to_contain_text(coupon)
    expect(results).to_contain_text(unknown)
    page.get_by_label("Verdict").select_option("notFound")
    expect(results).not_to_contain_text(coupon)
    expect(results).to_contain_text(unknown)
    axe_check(page)
    shot(page, "import")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the result file").click()
    body = Path(info.value.path()).read_text()
    assert NAME in body and coupon in body and unknown in body and "notFound" in body
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the uploaded file").click()
    assert Path(info.value.path()).read_bytes() == data


def test_reports_show_exactly_the_scripted_traffic(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    emails = [f"rep-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(4)]
    with site.api() as api:
        pid = _promotion(api, "Reported shirts")
        cids = [_contact(api, e) for e in emails]
        coupons = [_assign(api, c, pid) for c in cids]  # assigned: 4
        for c in cids[:3]:  # shown: 3
            assert (
                len(
                    api.get(
                        f"/api/v2/contacts/{c}/promotions", params={"redemptionChannelType": "POS"}
                    ).json()
                )
                == 1
            )
        r = api.post(f"/api/v2/promotions/codes/{coupons[0]}/redeem",
                     json={"redemptionChannel": "POS", "storeExternalId": "S1"})  # fmt: skip
        assert r.status_code == 200, r.text
        created = (datetime.now(TZ) - timedelta(minutes=5)).replace(microsecond=0)
        sale = receipt_body(key=emails[1], used=[{"couponId": coupons[1]}], store="S2", created=created)
        assert api.post("/api/v2/receipts", json=sale).status_code == 200
        ret = receipt_body(key=emails[1], store="S2", created=created + timedelta(minutes=1),
                           items=[item("100.00", sku="A", qty=-1, type_="RETURN")],
                           originalUniqueReceiptId=sale["uniqueReceiptId"])  # fmt: skip
        assert api.post("/api/v2/receipts", json=ret).status_code == 200  # redeemed: 2, returned: 1
        expected = api.get(f"/api/v2/reports/promotions/{pid}").json()
    assert (expected["assigned"], expected["shown"], expected["redeemed"], expected["returns"]) == (
        4,
        3,
        2,
        1,
    )

    sign_in(page, site)
    page.get_by_role("link", name="Reports").click()
    page.wait_for_url("**/admin/reports")
    axe_check(page)
    page.get_by_label("Promotion").select_option(pid)
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Report: Reported shirts")
    for name, value in (("assigned", "4"), ("shown", "3"), ("redeemed", "2"), ("returned", "1")):
        expect(page.locator(f'[data-figure="{name}"]')).to_have_text(value)
    main = page.locator("main")
    expect(main).to_contain_text("75.0 % of assigned")  # shown
    expect(main).to_contain_text("50.0 % of assigned")  # redeemed
    expect(main).to_contain_text("50.0 % of redeemed")  # returned
    expect(page.locator("#as-of")).to_contain_text("Data as of")
    expect(page.locator("#chart-day")).to_be_visible()
    today = datetime.now(TZ).date().isoformat()
    row = page.locator("#table-day tbody tr").filter(has_text=today)
    expect(row.locator("td")).to_have_text(["4", "3", "2", "1"])
    axe_check(page)
    shot(page, "report")

    def download(link_index: int) -> list[dict[str, str]]:
        with page.expect_download() as info:
            page.get_by_role("link", name="Download CSV").nth(link_index).click()
        return list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))

    (funnel,) = download(0)
    assert (funnel["assigned"], funnel["shown"], funnel["redeemed"], funnel["returned"]) == (
        "4",
        "3",
        "2",
        "1",
    )
    days = {r["date"]: r for r in download(1)}
    assert (days[today]["assigned"], days[today]["shown"], days[today]["redeemed"], days[today]["returned"]) == (
        "4", "3", "2", "1")  # fmt: skip
    assert sum(int(r["assigned"]) for r in days.values()) == 4
    channels = {r["channel"]: r["redeemed"] for r in download(2)}
    assert channels == {"POS": "2"}
    stores = {r["storeExternalId"]: (r["redeemed"], r["receipts"], r["returned"]) for r in download(3)}
    assert stores == {"S1": ("1", "0", "0"), "S2": ("1", "1", "1")}
