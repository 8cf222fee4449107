"""Promotion reports: the figures equal what the scenario put in — several channels, stores and days (days in the
tenant's time zone, Europe/Stockholm: UTC+1 in March), receipts, a return — as JSON and as CSV."""

from __future__ import annotations

import csv
import io
import uuid

from tests.server.receipt.conftest import Flow, assert_error, at, item, receipt_body


def _fetch(flow: Flow, contact_id: str, store: str | None = None) -> None:
    headers = {**flow.api.headers, **({"storeExternalId": store} if store else {})}
    assert flow.api.get(f"/api/v2/contacts/{contact_id}/promotions", headers=headers).status_code == 200


def test_report_figures_equal_the_scenario(flow: Flow) -> None:
    api = flow.api
    assert api.put("/api/v2/stores/S1", json={"name": "City"}).status_code == 201
    assert api.put("/api/v2/stores/WEB", json={"name": "Web", "type": "ECOM"}).status_code == 201
    emails = [f"c{i}@example.com" for i in range(1, 6)]
    c1, c2, c3, c4, c5 = (flow.contact(e) for e in emails)
    p = flow.promotion("POS", "ECOM", name="Spring")
    q = flow.promotion("POS", name="Other")

    api.clock.set(at(10, 12))  # 13:00 local, 10 March
    a1, a2, a3 = flow.assign(c1, p), flow.assign(c2, p), flow.assign(c3, p)
    flow.assign(c1, q)
    api.clock.set(at(10, 15))
    _fetch(flow, c1, "S1")
    _fetch(flow, c1, "S1")
    _fetch(flow, c2)

    api.clock.set(at(11, 9, 30))
    sale1 = receipt_body(key=emails[0], used=[{"couponId": a1}], store="S1", created="2026-03-11T10:00:00+01:00",
                         items=[item("100.00", sku="A", discount="-20"), item("50.00", sku="B")])  # fmt: skip
    assert flow.send(sale1).json()["warnings"] == []

    api.clock.set(at(11, 23, 30))  # 00:30 local on 12 March
    a4 = flow.assign(c4, p)
    flow.assign(c5, p)
    _fetch(flow, c3)
    _fetch(flow, c4)

    api.clock.set(at(12, 10))
    assert flow.redeem(a2, "ECOM").status_code == 200
    api.clock.set(at(12, 10, 10))
    sale2 = receipt_body(key=emails[1], used=[{"promotionId": p}], store="WEB", created="2026-03-12T11:05:00+01:00",
                         items=[item("80.00", sku="C")])  # fmt: skip
    assert flow.send(sale2).json()["warnings"] == []
    api.clock.set(at(12, 12))
    sale3 = receipt_body(key=emails[2], used=[{"couponId": a3}], store="WEB", created="2026-03-12T12:55:00+01:00",
                         items=[item("200.00", sku="D")])  # fmt: skip
    assert flow.send(sale3).json()["warnings"] == []

    api.clock.set(at(13, 9))
    back = receipt_body(key=emails[0], store="S1", created="2026-03-13T10:00:00+01:00",
                        items=[item("50.00", sku="B", qty=-1, type_="RETURN")],
                        originalUniqueReceiptId=sale1["uniqueReceiptId"])  # fmt: skip
    assert flow.send(back).json()["warnings"] == []
    assert a4  # assigned, shown, never redeemed

    r = api.get(f"/api/v2/reports/promotions/{p}")
    assert r.status_code == 200, r.text
    report = r.json()
    zero = {
        "redeemed": 0,
        "receipts": 0,
        "returns": 0,
        "revenue": {},
        "discount": {},
    }
    assert report == {
        "promotionId": p, "name": "Spring", "status": "Active", "timeZone": "Europe/Stockholm",
        "assigned": 5, "deleted": 0, "shown": 4, "impressions": 5, "redeemed": 3, "reactivated": 0,
        "redemptionRate": 0.6, "receipts": 3, "returns": 1, "revenue": {"SEK": 380}, "discount": {"SEK": 20},
        "byChannel": [{"channel": "ECOM", "redeemed": 2}, {"channel": "POS", "redeemed": 1}],
        "byStore": [
            {**zero, "storeExternalId": "S1", "storeName": "City", "redeemed": 1, "receipts": 1, "returns": 1,
             "revenue": {"SEK": 100}, "discount": {"SEK": 20}},
            {**zero, "storeExternalId": "WEB", "storeName": "Web", "redeemed": 1, "receipts": 2,
             "revenue": {"SEK": 280}, "discount": {"SEK": 0}},
            {**zero, "storeExternalId": None, "redeemed": 1},
        ],
        "byDay": [
            {**zero, "date": "2026-03-10", "shown": 2},
            {**zero, "date": "2026-03-11", "shown": 0, "redeemed": 1, "receipts": 1, "revenue": {"SEK": 150},
             "discount": {"SEK": 20}},
            {**zero, "date": "2026-03-12", "shown": 2, "redeemed": 2, "receipts": 2, "revenue": {"SEK": 280},
             "discount": {"SEK": 0}},
            {**zero, "date": "2026-03-13", "shown": 0, "returns": 1, "revenue": {"SEK": -50},
             "discount": {"SEK": 0}},
        ],
    }  # fmt: skip

    r = api.get(f"/api/v2/reports/promotions/{p}", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    total = rows[0]
    assert (total["section"], total["assigned"], total["shown"], total["redeemed"], total["redemptionRate"],
            total["receipts"], total["returns"], total["revenue_SEK"], total["discount_SEK"]) == (
        "total", "5", "4", "3", "0.6", "3", "1", "380", "20")  # fmt: skip
    days = {row["key"]: row for row in rows if row["section"] == "day"}
    assert (days["2026-03-12"]["shown"], days["2026-03-12"]["redeemed"], days["2026-03-12"]["revenue_SEK"]) == (
        "2", "2", "280")  # fmt: skip
    assert [row["key"] for row in rows if row["section"] == "channel"] == ["ECOM", "POS"]
    assert [row["key"] for row in rows if row["section"] == "store"] == ["S1", "WEB", ""]

    listing = api.get("/api/v2/reports/promotions").json()
    assert listing["totalCount"] == 2 and listing["count"] == 2
    # Both were created at the same (frozen) instant: oldest first, then by id.
    assert sorted(listing["items"], key=lambda i: i["name"], reverse=True) == [
        {"promotionId": p, "name": "Spring", "status": "Active", "assigned": 5, "shown": 4,
         "redeemed": 3, "redemptionRate": 0.6, "receipts": 3, "revenue": {"SEK": 380}},
        {"promotionId": q, "name": "Other", "status": "Active", "assigned": 1, "shown": 1,
         "redeemed": 0, "redemptionRate": 0.0, "receipts": 0, "revenue": {}},
    ]  # fmt: skip
    lines = list(
        csv.reader(io.StringIO(api.get("/api/v2/reports/promotions", params={"format": "csv"}).text))
    )
    assert lines[0][-1] == "revenue_SEK"
    assert {(line[0], line[-1]) for line in lines[1:]} == {(p, "380"), (q, "0")}


def test_report_errors(flow: Flow) -> None:
    assert_error(flow.api.get(f"/api/v2/reports/promotions/{uuid.uuid4()}"), 404, "PromotionNotFound")
    assert_error(flow.api.get("/api/v2/reports/promotions/abc"), 400, "InvalidPromotionIdNoData")
    pid = flow.promotion("POS")
    assert_error(
        flow.api.get(f"/api/v2/reports/promotions/{pid}", params={"format": "xml"}), 400, "InvalidFormat"
    )
    other = flow.api.new_tenant()
    assert_error(flow.api.get(f"/api/v2/reports/promotions/{pid}", headers=flow.api.as_tenant(other)), 404,
                 "PromotionNotFound")  # fmt: skip
    empty = flow.api.get(f"/api/v2/reports/promotions/{pid}").json()
    assert (empty["assigned"], empty["redemptionRate"], empty["byDay"], empty["revenue"]) == (0, 0.0, [], {})


def test_a_receipt_using_two_assignments_of_one_promotion_counts_once(flow: Flow) -> None:
    email = "twice@example.com"
    cid = flow.contact(email)
    pid = flow.promotion("POS")
    first, second = flow.assign(cid, pid), flow.assign(cid, pid)
    flow.api.clock.set(at(10, 13))
    body = receipt_body(key=email, used=[{"couponId": first}, {"couponId": second}], created=at(10, 12, 30),
                        items=[item("120.00", sku="X", discount="-30")])  # fmt: skip
    assert flow.send(body).json()["warnings"] == []
    report = flow.api.get(f"/api/v2/reports/promotions/{pid}").json()
    assert (report["redeemed"], report["receipts"], report["revenue"], report["discount"]) == (
        2, 1, {"SEK": 120}, {"SEK": 30})  # fmt: skip
    [headline] = flow.api.get("/api/v2/reports/promotions").json()["items"]
    assert (headline["receipts"], headline["revenue"]) == (1, {"SEK": 120})
