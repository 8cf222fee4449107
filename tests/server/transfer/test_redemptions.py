"""Redemption files over the real FTP server: every verdict, exactly once, with the API's own rules."""

from __future__ import annotations

from datetime import timedelta

from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, Verdict, write_redemptions
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion

NAME = "20260310120000_7_redemptions.xml"


def _red(coupon: str, **kw: object) -> Redemption:
    kw.setdefault("redemption_channel", "POS")
    kw.setdefault("redeemed_on", START + timedelta(minutes=1))
    return Redemption(coupon_id=coupon, **kw)  # type: ignore[arg-type]


def test_redemption_file_applies_each_line_once_with_a_verdict(transfer):
    api = transfer.api
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS"), channel("ECOM")])
    a1, a2, a3 = (assign(api, c["id"], promo["id"])["id"] for _ in range(3))
    r = api.post(f"/api/v2/promotions/codes/{a3}/redeem", json={"redemptionChannel": "ECOM"},
                 headers={**api.headers, "Idempotency-Key": "api-key-3"})  # fmt: skip
    assert r.status_code == 200, r.text
    data = write_redemptions([
        _red(a1, idempotency_key="k1", unique_receipt_id="R1", store_external_id="S1"),
        _red(a2),
        _red(a3, idempotency_key="api-key-3"),
        _red(a1, idempotency_key="k1b", store_external_id="S9"),
        _red("6f9619ff-8b86-d011-b42d-00cf4fc964ff"),
    ])  # fmt: skip
    summary, records = transfer.process(REDEMPTION_IMPORT_DIR, NAME, data)
    assert summary.status == "processed"
    verdicts = [r.verdict for r in records]
    assert verdicts == [Verdict.APPLIED, Verdict.APPLIED, Verdict.DUPLICATE, Verdict.CONFLICT_ALREADY_REDEEMED,
                        Verdict.NOT_FOUND]  # fmt: skip
    conflict = records[3]
    assert conflict.store_external_id == "S1" and conflict.unique_receipt_id == "R1"
    assert conflict.redemption_channel == "POS" and conflict.redeemed_on is not None
    # processed and gone from the upload folder
    root = transfer.root()
    assert (root / "integration/processed" / NAME).exists()
    assert list((root / "integration/promotionRedemptionImport").iterdir()) == []
    # the API agrees
    items = api.get(f"/api/v2/contacts/{c['id']}/promotions", params={"includeRedeemed": "true"}).json()
    assert all(i["redeemed"] for i in items)
    (imp,) = transfer.imports()
    assert imp["status"] == "done" and imp["counts"]["applied"] == 2
    detail = transfer.import_detail(imp["id"], verdict="conflictAlreadyRedeemed")
    assert detail["records"]["totalCount"] == 1
    assert detail["records"]["items"][0]["storeExternalId"] == "S1"


def test_receipt_matches_an_api_redeem_and_other_verdicts(transfer):
    api = transfer.api
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")], assigned={"unit": "Days", "amount": 1})
    by_receipt, elsewhere, late, wrong_channel, not_yet = (
        assign(api, c["id"], promo["id"])["id"] for _ in range(5)
    )
    for coupon, body in (
        (by_receipt, {"redemptionChannel": "POS", "uniqueReceiptId": "R-API", "storeExternalId": "S1"}),
        (elsewhere, {"redemptionChannel": "POS", "uniqueReceiptId": "R-OTHER", "storeExternalId": "S7"}),
    ):
        r = api.post(f"/api/v2/promotions/codes/{coupon}/redeem", json=body)
        assert r.status_code == 200, r.text
    api.clock.advance(timedelta(days=3))  # the one-day assignments are now past their validity
    now = api.clock.now()
    data = write_redemptions([
        _red(by_receipt, unique_receipt_id="R-API", store_external_id="S1"),  # the same sale, replayed: duplicate
        _red(elsewhere, unique_receipt_id="R-FILE", store_external_id="S2"),  # another sale: conflict
        _red(late, redeemed_on=now),  # after the validity: expired
        _red(wrong_channel, redemption_channel="ECOM"),  # the promotion has no ECOM channel: invalid
        _red(not_yet, redeemed_on=START - timedelta(days=1)),  # before the assignment: invalid
        _red(late, redeemed_on=now + timedelta(days=1)),  # in the future: invalid
    ])  # fmt: skip
    name = "20260313120000_S1_redemptions.xml"
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, name, data)
    assert [r.verdict for r in records] == [
        Verdict.DUPLICATE, Verdict.CONFLICT_ALREADY_REDEEMED, Verdict.EXPIRED,
        Verdict.INVALID, Verdict.INVALID, Verdict.INVALID,
    ]  # fmt: skip
    dup, conflict = records[0], records[1]
    assert dup.unique_receipt_id == "R-API" and dup.store_external_id == "S1"
    assert conflict.unique_receipt_id == "R-OTHER" and conflict.store_external_id == "S7"
    assert conflict.redeemed_on == START and conflict.redemption_channel == "POS"
    assert "PromotionNotValidForRedemptionChannel" in (records[3].reason or "")
    assert "PromotionNotYetValid" in (records[4].reason or "")
    assert "InvalidRedeemedOn" in (records[5].reason or "")


def test_a_batch_redeems_only_what_each_line_may_redeem(transfer):
    """One batch mixing lines that redeem with lines the write must refuse (another contact's coupon, another
    tenant's coupon, a coupon redeemed before): the set-based write of either database redeems exactly the
    first kind, and each refusal gets the verdict the single redeem gives it."""
    api = transfer.api
    c, someone = new_contact(api), new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    mine, scoped, wrong_contact, taken = (assign(api, c["id"], promo["id"])["id"] for _ in range(4))
    assert (
        api.post(f"/api/v2/promotions/codes/{taken}/redeem", json={"redemptionChannel": "POS"}).status_code
        == 200
    )
    other = api.new_tenant()
    oc = new_contact(api, headers=api.as_tenant(other))
    op = new_promotion(api, headers=api.as_tenant(other), channels=[channel("POS")])
    theirs = assign(api, oc["id"], op["id"], headers=api.as_tenant(other))["id"]
    data = write_redemptions([
        _red(mine),
        _red(scoped, contact_id=c["id"]),
        _red(wrong_contact, contact_id=someone["id"]),  # held by c, not by someone
        _red(theirs),  # exists, in another tenant: not found here
        _red(taken, store_external_id="S2"),
    ])  # fmt: skip
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, NAME, data)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED, Verdict.APPLIED, Verdict.NOT_FOUND, Verdict.NOT_FOUND, Verdict.CONFLICT_ALREADY_REDEEMED,
    ]  # fmt: skip
    assert "PromotionNotAssociatedWithContact" in (records[2].reason or "")
    items = api.get(f"/api/v2/contacts/{c['id']}/promotions", params={"includeRedeemed": "true"}).json()
    assert {i["id"]: i["redeemed"] for i in items} == {
        mine: True,
        scoped: True,
        wrong_contact: False,
        taken: True,
    }
    other_items = api.get(f"/api/v2/contacts/{oc['id']}/promotions", headers=api.as_tenant(other)).json()
    assert [i["id"] for i in other_items] == [theirs]  # still redeemable in its own tenant


def test_lines_sharing_a_key_are_judged_in_file_order_within_a_batch(transfer):
    """Line 2 waits for line 1 (same coupon); line 3 shares line 2's key. Line 3 must not go before line 2: the
    key belongs to line 2's coupon, and line 3, a second use of the key for another coupon, is invalid."""
    api = transfer.api
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    first, other = (assign(api, c["id"], promo["id"])["id"] for _ in range(2))
    data = write_redemptions([
        _red(first, unique_receipt_id="R1"),
        _red(first, idempotency_key="K"),  # after line 1 (same coupon): a conflict, and the key stays unused
        _red(other, idempotency_key="K"),  # after line 2 (same key): the key is free, so it redeems
        _red(first, idempotency_key="K"),  # after line 3: the key is now other's → invalid
    ])  # fmt: skip
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, NAME, data)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED, Verdict.CONFLICT_ALREADY_REDEEMED, Verdict.APPLIED, Verdict.INVALID,
    ]  # fmt: skip
    assert other in (records[3].reason or "")


def test_a_replayed_line_stays_a_duplicate_after_its_coupon_was_reactivated(transfer):
    """A line that replays an earlier redemption (its key, or its receipt on its coupon) is a duplicate even when
    the coupon is redeemable again: the batch leaves it alone, it does not redeem the coupon a second time."""
    api = transfer.api
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    by_key, by_receipt = (assign(api, c["id"], promo["id"])["id"] for _ in range(2))
    lines = [_red(by_key, idempotency_key="K1"), _red(by_receipt, unique_receipt_id="R2")]
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, NAME, write_redemptions(lines))
    assert [r.verdict for r in records] == [Verdict.APPLIED, Verdict.APPLIED]
    for coupon in (by_key, by_receipt):
        assert api.post(f"/api/v2/promotions/codes/{coupon}/reactivate").status_code == 200
    replay = "20260310120100_8_redemptions.xml"
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, replay, write_redemptions(lines[::-1]))
    assert [r.verdict for r in records] == [Verdict.DUPLICATE, Verdict.DUPLICATE]
    items = api.get(f"/api/v2/contacts/{c['id']}/promotions", params={"includeRedeemed": "true"}).json()
    assert {i["id"]: i["redeemed"] for i in items} == {by_key: False, by_receipt: False}
