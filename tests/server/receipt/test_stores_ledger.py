"""Stores (registered on first sight, GET/PUT) and the assignment ledger (assigned, shown, redeemed, linked,
reactivated), including 'shown' recorded from the fetch without a write on the fetch path."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from promoflow.server.models.receipts import assignment_shown
from tests.server.receipt.conftest import Flow, assert_error, receipt_body


def test_stores_are_registered_on_first_sight_and_can_be_named(flow: Flow) -> None:
    email = "store@example.com"
    flow.contact(email)
    assert_error(flow.api.get("/api/v2/stores/S9"), 404, "StoreNotFound")
    assert flow.send(receipt_body(key=email, store="S9")).status_code == 200
    s9 = flow.api.get("/api/v2/stores/S9").json()
    assert (s9["externalId"], s9.get("name"), s9["type"], s9["active"]) == ("S9", None, "RETAIL", True)
    assert "name" not in s9 and "city" not in s9  # absent optional fields are left out, not null
    r = flow.api.put("/api/v2/stores/S9", json={"name": "Stockholm City", "city": "Stockholm"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["type"], r.json()["city"]) == ("Stockholm City", "RETAIL", "Stockholm")
    r = flow.api.put("/api/v2/stores/S9", json={"type": "ECOM"})
    assert (r.json()["name"], r.json()["type"], r.json()["city"]) == ("Stockholm City", "ECOM", "Stockholm")
    assert flow.api.put("/api/v2/stores/NEW", json={"name": "New"}).status_code == 201
    assert [s["externalId"] for s in flow.api.get("/api/v2/stores").json()] == ["NEW", "S9"]
    assert_error(flow.api.put("/api/v2/stores/S9", json={"type": "KIOSK"}), 400, "InvalidPayload")
    other = flow.api.new_tenant()
    assert_error(flow.api.get("/api/v2/stores/S9", headers=flow.api.as_tenant(other)), 404, "StoreNotFound")


def test_ledger_lists_every_event_of_an_assignment(flow: Flow) -> None:
    email = "ledger@example.com"
    cid = flow.contact(email)
    pid = flow.promotion("POS", return_policy="reactivateOnReturn")
    aid = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(minutes=10))
    for _ in range(3):
        r = flow.api.get(f"/api/v2/contacts/{cid}/promotions", params={"redemptionChannelType": "POS"},
                         headers={**flow.api.headers, "storeExternalId": "S1"})  # fmt: skip
        assert [i["id"] for i in r.json()] == [aid]
    flow.api.clock.advance(timedelta(minutes=10))
    r = flow.api.get("/api/v3/promotion-assignments", params={"contactId": cid})
    assert [i["assignmentId"] for i in r.json()] == [aid]
    flow.api.clock.advance(timedelta(minutes=10))
    sale = receipt_body(key=email, used=[{"couponId": aid}], created="2026-03-10T13:25:00+01:00")
    assert flow.send(sale).json()["warnings"] == []
    flow.api.clock.advance(timedelta(minutes=10))
    assert flow.api.post(f"/api/v2/promotions/codes/{aid}/reactivate").status_code == 200

    r = flow.api.get(f"/api/v2/promotions/codes/{aid}/events")
    assert r.status_code == 200, r.text
    ledger = r.json()
    assert (ledger["assignmentId"], ledger["promotionId"], ledger["contactId"]) == (aid, pid, cid)
    # The three fetches are one 'shown' event (count 3) when the buffer writes them in one batch; on a loaded
    # machine its once-a-second flush may fall between them, making two rows of the same minute: sum those.
    merged: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for e in ledger["events"]:
        plain = {k: v for k, v in e.items() if k != "detail"}
        if merged and plain["type"] == "shown" and merged[-1][0] == plain:
            merged[-1][1]["count"] += e["detail"]["count"]
            continue
        merged.append((plain, dict(e.get("detail") or {})))
    events = [plain for plain, _ in merged]
    assert events == [
        {"type": "assigned", "at": "2026-03-10T13:00:00+01:00", "via": "api"},
        {"type": "shown", "at": "2026-03-10T13:10:00+01:00", "storeExternalId": "S1"},
        {"type": "shown", "at": "2026-03-10T13:20:00+01:00"},
        {"type": "redeemed", "at": "2026-03-10T13:25:00+01:00", "via": "receipt", "channel": "POS",
         "storeExternalId": "S1", "uniqueReceiptId": sale["uniqueReceiptId"]},
        {"type": "linked", "at": "2026-03-10T13:30:00+01:00", "storeExternalId": "S1",
         "uniqueReceiptId": sale["uniqueReceiptId"]},
        {"type": "reactivated", "at": "2026-03-10T13:40:00+01:00", "via": "api"},
    ]  # fmt: skip
    assert merged[1][1]["count"] == 3
    assert merged[4][1]["as"] == "redeemed"
    assert flow.count(assignment_shown, assignment_shown.c.assignment_id == uuid.UUID(aid)) == 1
    same = flow.api.get(f"/api/v3/promotion-assignments/{aid}/events").json()
    assert same == ledger
    assert_error(flow.api.get(f"/api/v2/promotions/codes/{uuid.uuid4()}/events"), 404, "PromotionNotFound")
    assert_error(flow.api.get("/api/v2/promotions/codes/x/events"), 400, "InvalidPromotionIdNoData")
