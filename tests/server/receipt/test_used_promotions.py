"""usedPromotions (A12): resolved to the contact's assignment, linked; an unredeemed one is redeemed by the
receipt (channel from the store type, redeemedOn = createdDate); an already redeemed one is linked; an
unresolvable one is a warning and the receipt is still stored."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.server.receipt.conftest import Flow, receipt_body

EMAIL = "used@example.com"


def _events(flow: Flow, assignment_id: str) -> list[dict]:
    r = flow.api.get(f"/api/v2/promotions/codes/{assignment_id}/events")
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def test_receipt_redeems_an_unredeemed_assignment_once(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS")
    aid = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(hours=1))
    body = receipt_body(key=EMAIL, used=[{"couponId": aid}], created="2026-03-10T13:30:00+01:00")
    r = flow.send(body)
    assert r.json() == {"uniqueReceiptId": body["uniqueReceiptId"], "status": "Created", "warnings": []}
    item = flow.item_of(cid, aid)
    assert item["redeemed"] is True and item["redeemedOn"] == "2026-03-10T13:30:00+01:00"
    assert flow.redemptions(aid) == 1 and flow.links(aid) == 1
    redeemed = [e for e in _events(flow, aid) if e["type"] == "redeemed"]
    assert redeemed == [
        {"type": "redeemed", "at": "2026-03-10T13:30:00+01:00", "via": "receipt", "channel": "POS",
         "storeExternalId": "S1", "uniqueReceiptId": body["uniqueReceiptId"],
         "detail": {"seq": 1, "recordedAt": "2026-03-10T14:00:00+01:00"}}
    ]  # fmt: skip
    # The same receipt again changes nothing; another receipt naming it links without redeeming again.
    assert flow.send(body).json()["status"] == "Duplicate"
    other = flow.send(receipt_body(key=EMAIL, used=[{"promotionId": aid}]))
    assert other.json()["status"] == "Created" and other.json()["warnings"] == []
    assert flow.redemptions(aid) == 1 and flow.links(aid) == 2
    tx = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()["items"]
    kinds = sorted(link["kind"] for t in tx for link in t["usedPromotions"])
    assert kinds == ["linked", "redeemed"]


def test_template_id_resolves_to_the_oldest_redeemable_assignment(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS")
    first = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(minutes=1))
    second = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(minutes=1))
    body = receipt_body(key=EMAIL, used=[{"promotionId": pid}], created="2026-03-10T13:02:00+01:00")
    assert flow.send(body).json()["warnings"] == []
    assert flow.item_of(cid, first)["redeemed"] and not flow.item_of(cid, second)["redeemed"]


def test_template_id_links_the_assignment_the_pos_redeemed_for_this_sale(flow: Flow) -> None:
    """The Engage flow: redeem first, then send the receipt naming the promotion: no second redemption."""
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS")
    first = flow.assign(cid, pid)
    second = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(hours=2))
    assert flow.redeem(second).status_code == 200
    r = flow.send(receipt_body(key=EMAIL, used=[{"promotionId": pid}], created="2026-03-10T14:55:00+01:00"))
    assert r.json()["warnings"] == []
    assert not flow.item_of(cid, first)["redeemed"]
    assert flow.redemptions(second) == 1 and flow.links(second) == 1 and flow.links(first) == 0
    # With the receipt id on the redeem call, that redemption is the one linked even among several.
    uid = f"sale-{uuid.uuid4().hex[:8]}"
    r = flow.api.post(f"/api/v2/promotions/codes/{first}/redeem",
                      json={"redemptionChannel": "POS", "uniqueReceiptId": uid})  # fmt: skip
    assert r.status_code == 200
    assert flow.send(receipt_body(key=EMAIL, uid=uid, used=[{"promotionId": pid}])).json()["warnings"] == []
    assert flow.links(first) == 1 and flow.redemptions(first) == 1


def test_channel_comes_from_the_store_type(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    both = flow.promotion("POS", "ECOM")
    pos_only = flow.promotion("POS")
    a_both, a_pos = flow.assign(cid, both), flow.assign(cid, pos_only)
    r = flow.api.put("/api/v2/stores/WEB", json={"name": "Web shop", "type": "ecom"})
    assert r.status_code == 201 and r.json()["type"] == "ECOM"
    r = flow.send(receipt_body(key=EMAIL, store="WEB", used=[{"couponId": a_both}, {"couponId": a_pos}]))
    assert r.status_code == 200 and r.json()["status"] == "Created"
    [warning] = r.json()["warnings"]
    assert warning.startswith("usedPromotions[1]: PromotionNotValidForRedemptionChannel:")
    events = _events(flow, a_both)
    assert [e["channel"] for e in events if e["type"] == "redeemed"] == ["ECOM"]
    assert flow.redemptions(a_pos) == 0 and flow.links(a_pos) == 0


def test_unresolvable_entries_are_warnings_and_the_receipt_is_stored(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    other = flow.contact("someone.else@example.com")
    pid = flow.promotion("POS")
    theirs = flow.assign(other, pid)
    valid = flow.promotion("POS")
    late = flow.assign(cid, valid)
    used = [
        {"couponId": str(uuid.uuid4())},
        {"promotionId": "not-a-guid"},
        {"couponId": theirs},
        {},
        {"promotionId": pid},
        {"couponId": late},
    ]
    flow.api.clock.advance(timedelta(hours=1))
    body = receipt_body(key=EMAIL, used=used, created="2026-03-10T13:30:00+01:00")
    r = flow.send(body)
    assert r.status_code == 200 and r.json()["status"] == "Created"
    codes = [w.split(": ")[1] for w in r.json()["warnings"]]
    assert codes == ["PromotionNotFound", "InvalidPromotionId", "PromotionNotAssociatedWithContact",
                     "InvalidUsedPromotion", "PromotionNotAssociatedWithContact"]  # fmt: skip
    assert [w.split(":")[0] for w in r.json()["warnings"]] == [f"usedPromotions[{i}]" for i in range(5)]
    assert flow.receipts(body["uniqueReceiptId"]) == 1
    assert flow.item_of(cid, late)["redeemed"]  # the valid one was still applied
    assert not flow.item_of(other, theirs)["redeemed"]
    tx = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()["items"][0]
    assert tx["warnings"] == r.json()["warnings"]


def test_assignment_not_valid_at_the_sale_is_a_warning(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS", start="2026-03-10")
    aid = flow.assign(cid, pid)  # valid from now (2026-03-10 13:00 local)
    r = flow.send(receipt_body(key=EMAIL, used=[{"couponId": aid}], created="2026-03-10T09:00:00+01:00"))
    [warning] = r.json()["warnings"]
    assert "PromotionNotYetValid" in warning
    assert flow.redemptions(aid) == 0
