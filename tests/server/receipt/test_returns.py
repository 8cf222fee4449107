"""Returns: a RETURN receipt naming its sale (originalUniqueReceiptId, extension) is linked to the sale's
promotions; with returnPolicy reactivateOnReturn the assignment is reactivated once every line that carried the
promotion's discount has come back."""

from __future__ import annotations

from datetime import timedelta

from tests.server.receipt.conftest import Flow, item, receipt_body

EMAIL = "returns@example.com"


def _sale(flow: Flow, policy: str | None) -> tuple[str, str, dict]:
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS", return_policy=policy)
    aid = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(hours=1))
    sale = receipt_body(
        key=EMAIL,
        used=[{"couponId": aid}],
        created="2026-03-10T13:30:00+01:00",
        items=[item("160.00", sku="SHIRT", qty=2, discount="-40.00"), item("50.00", sku="SOCKS")],
    )
    assert flow.send(sale).json()["warnings"] == []
    assert flow.item_of(cid, aid)["redeemed"]
    return cid, aid, sale


def _return(sale: dict, *lines: dict) -> dict:
    return receipt_body(key=EMAIL, items=list(lines), created="2026-03-10T15:00:00+01:00",
                        originalUniqueReceiptId=sale["uniqueReceiptId"])  # fmt: skip


def test_returning_the_discounted_lines_reactivates_the_assignment(flow: Flow) -> None:
    cid, aid, sale = _sale(flow, "reactivateOnReturn")
    flow.api.clock.advance(timedelta(hours=2))
    # One of the two discounted shirts: not yet.
    first = flow.send(_return(sale, item("80.00", sku="SHIRT", qty=-1, type_="RETURN")))
    assert first.status_code == 200 and first.json()["warnings"] == []
    assert flow.item_of(cid, aid)["redeemed"]
    # The second shirt comes back in another return: every discounted line is back (the socks need not be).
    second = flow.send(_return(sale, item("80.00", sku="SHIRT", qty=-1, type_="RETURN")))
    assert second.json()["warnings"] == []
    assert not flow.item_of(cid, aid)["redeemed"]
    events = flow.api.get(f"/api/v2/promotions/codes/{aid}/events").json()["events"]
    assert [(e["type"], e.get("via")) for e in events if e["type"] in ("redeemed", "reactivated")] == [
        ("redeemed", "receipt"),
        ("reactivated", "return"),
    ]
    assert sorted(e["detail"]["as"] for e in events if e["type"] == "linked") == [
        "redeemed",
        "returned",
        "returned",
    ]
    # The assignment can be used again, by a later sale.
    again = flow.send(receipt_body(key=EMAIL, used=[{"couponId": aid}], created="2026-03-10T16:00:00+01:00"))
    assert again.json()["warnings"] == [] and flow.redemptions(aid) == 2
    # A late third return of the first sale does not take back the second redemption.
    flow.send(_return(sale, item("50.00", sku="SOCKS", type_="RETURN")))
    assert flow.item_of(cid, aid)["redeemed"]


def test_without_the_policy_a_return_is_linked_but_reactivates_nothing(flow: Flow) -> None:
    cid, aid, sale = _sale(flow, None)
    flow.api.clock.advance(timedelta(hours=2))
    r = flow.send(_return(sale, item("160.00", sku="SHIRT", qty=-2, type_="RETURN"),
                          item("50.00", sku="SOCKS", type_="RETURN")))  # fmt: skip
    assert r.json()["warnings"] == []
    assert flow.item_of(cid, aid)["redeemed"]
    assert flow.links(aid) == 2


def test_return_of_an_unknown_sale_is_stored_with_a_warning(flow: Flow) -> None:
    flow.contact(EMAIL)
    body = receipt_body(
        key=EMAIL, items=[item("10.00", type_="RETURN", qty=-1)], originalUniqueReceiptId="nope"
    )
    r = flow.send(body)
    assert r.status_code == 200 and r.json()["status"] == "Created"
    assert r.json()["warnings"] == ["originalUniqueReceiptId: OriginalReceiptNotFound: no receipt 'nope'"]
