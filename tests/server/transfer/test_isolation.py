"""No file crosses tenants: tenant B's files that name tenant A's coupons, receipts, keys, contacts, promotions
and codes get exactly the verdicts they would get for ids that exist nowhere, never a verdict (or a detail)
derived from A's data, and A's data does not change. One test per file type, every verdict A's data could
produce for the same line; on both databases."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from promoflow.server.db import make_sync_engine
from promoflow.server.models import receipt, receipt_promotion
from promoflow.wire.engage import Receipt
from promoflow.wire.xml import (
    CONTACT_IMPORT_DIR,
    PROMOTION_IMPORT_DIR,
    REDEMPTION_IMPORT_DIR,
    TRANSACTION_IMPORT_DIR,
    ContactRecord,
    PromotionAssignment,
    PromotionUpsert,
    Redemption,
    Verdict,
    write_contacts,
    write_promotions,
    write_redemptions,
    write_transactions,
)
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion, snapshot
from tests.server.receipt.conftest import item, receipt_body

AT = START + timedelta(minutes=1)
DETAIL = ("redeemed_on", "redemption_channel", "store_external_id", "unique_receipt_id", "contact_id")


def _red(coupon: str, **kw: Any) -> Redemption:
    kw.setdefault("redemption_channel", "POS")
    kw.setdefault("redeemed_on", AT)
    return Redemption(coupon_id=coupon, **kw)


def _no_detail(record: Any) -> None:
    """A verdict that says nothing about any other tenant's data: no when/how/where/receipt/contact."""
    assert all(getattr(record, name) is None for name in DETAIL), record


def _receipt_rows(url: str, tenant_id: str) -> list[tuple[Any, ...]]:
    tid = uuid.UUID(tenant_id)
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(receipt).where(receipt.c.tenant_id == tid).order_by(receipt.c.id)
            ).all()
            links = conn.scalar(
                select(func.count())
                .select_from(receipt_promotion)
                .where(receipt_promotion.c.tenant_id == tid)
            )
        return [(r.unique_receipt_id, r.contact_id, r.status) for r in rows] + [("links", links)]
    finally:
        engine.dispose()


def test_redemption_lines_naming_another_tenants_data_are_not_found(transfer):
    """Each of A's coupons is in the state that gives every verdict to A's own lines — unredeemed (applied),
    redeemed with a receipt and a key (duplicate), redeemed elsewhere (conflictAlreadyRedeemed), past its
    validity (expired), POS-only (invalid for ECOM), and held by A's contact — and for B each is notFound with
    no detail, exactly as a coupon that exists nowhere."""
    api = transfer.api
    a = api.tenant
    ca = new_contact(api)
    pa = new_promotion(api, channels=[channel("POS")])
    short = new_promotion(api, channels=[channel("POS")], assigned={"unit": "Days", "amount": 1})
    free, by_receipt, elsewhere, wrong_channel = (assign(api, ca["id"], pa["id"])["id"] for _ in range(4))
    expired = assign(api, ca["id"], short["id"])["id"]
    r = api.post(f"/api/v2/promotions/codes/{by_receipt}/redeem",
                 json={"redemptionChannel": "POS", "uniqueReceiptId": "R-A", "storeExternalId": "S-A"},
                 headers={**api.headers, "Idempotency-Key": "K-A"})  # fmt: skip
    assert r.status_code == 200, r.text
    r = api.post(f"/api/v2/promotions/codes/{elsewhere}/redeem", json={"redemptionChannel": "POS",
                 "uniqueReceiptId": "R-X", "storeExternalId": "S-X"})  # fmt: skip
    assert r.status_code == 200, r.text
    api.clock.advance(timedelta(days=3))  # the one-day coupon is past its validity now
    now = api.clock.now()

    b = api.new_tenant()
    hb = api.as_tenant(b)
    cb = new_contact(api, headers=hb)
    pb = new_promotion(api, headers=hb, channels=[channel("POS")])
    own_key, own_receipt = (assign(api, cb["id"], pb["id"], headers=hb)["id"] for _ in range(2))
    nowhere = str(uuid.uuid4())
    before = snapshot(api.settings.resolved_database_url(), a["tenantId"])
    lines = [
        (_red(free), _red(nowhere)),
        (_red(by_receipt, unique_receipt_id="R-A"), _red(nowhere, unique_receipt_id="R-A")),
        (_red(by_receipt, idempotency_key="K-A"), _red(nowhere, idempotency_key="K-A2")),
        (_red(by_receipt, unique_receipt_id="R-A", store_external_id="S-A", idempotency_key="K-B1"),
         _red(nowhere, unique_receipt_id="R-A", store_external_id="S-A", idempotency_key="K-B2")),
        (_red(elsewhere, unique_receipt_id="R-Y"), _red(nowhere, unique_receipt_id="R-Y")),
        (_red(expired, redeemed_on=now), _red(nowhere, redeemed_on=now)),
        (_red(wrong_channel, redemption_channel="ECOM"), _red(nowhere, redemption_channel="ECOM")),
        (_red(free, contact_id=ca["id"]), _red(nowhere, contact_id=ca["id"])),
    ]  # fmt: skip
    theirs = [line for line, _ in lines]
    controls = [control for _, control in lines]
    data = write_redemptions([
        *theirs,
        *controls,
        # B's own coupons with A's key and A's receipt id: those are not B's, so they redeem
        _red(own_key, idempotency_key="K-A", redeemed_on=now),
        _red(own_receipt, unique_receipt_id="R-A", redeemed_on=now),
    ])  # fmt: skip
    summary, records = transfer.process(REDEMPTION_IMPORT_DIR, "20260313120000_B_redemptions.xml", data, b)
    assert summary.status == "processed"
    n = len(lines)
    for mine, control in zip(records[:n], records[n : 2 * n], strict=True):
        assert mine.verdict is Verdict.NOT_FOUND, mine
        assert control.verdict is Verdict.NOT_FOUND, control
        _no_detail(mine)
        # the reason names the line's own coupon and nothing else: the same words as for a coupon of nowhere
        assert (mine.reason or "").replace(mine.key or "", "?") == (control.reason or "").replace(
            control.key or "", "?"
        )
    assert [r.verdict for r in records[2 * n :]] == [Verdict.APPLIED, Verdict.APPLIED]
    assert snapshot(api.settings.resolved_database_url(), a["tenantId"]) == before  # A: nothing changed
    items = api.get(f"/api/v2/contacts/{ca['id']}/promotions").json()
    assert {i["id"] for i in items} == {free, wrong_channel}  # still A's to redeem


def test_receipt_files_never_match_another_tenants_receipts_contacts_or_coupons(transfer):
    """A's receipt id (a duplicate for A), A's contact by e-mail and by GUID (matched for A), A's coupon (redeemed
    by A's receipts) and A's receipt as the original of a return: none of it is B's. B's receipts are stored as
    B's own: new, pending their contact, the coupon reported unresolvable, the original not found."""
    api = transfer.api
    a = api.tenant
    url = api.settings.resolved_database_url()
    ca = new_contact(api, email="shared@example.com")
    pa = new_promotion(api, channels=[channel("POS")])
    coupon = assign(api, ca["id"], pa["id"])["id"]
    r = api.post("/api/v2/receipts", json=receipt_body(key="shared@example.com", uid="R-A"))
    assert r.status_code == 200, r.text

    b = api.new_tenant()
    hb = api.as_tenant(b)
    new_contact(api, headers=hb, email="b@example.com")
    before = snapshot(url, a["tenantId"]), _receipt_rows(url, a["tenantId"])
    receipts = [
        receipt_body(key="b@example.com", uid="R-A"),  # A's receipt id: for A a duplicate
        receipt_body(key="shared@example.com", uid="B-2"),  # A's contact's e-mail
        receipt_body(key=ca["id"], key_type="contactId", uid="B-3"),  # A's contact's GUID
        receipt_body(key="b@example.com", uid="B-4", used=[{"couponId": coupon}]),  # A's coupon
        receipt_body(key="b@example.com", uid="B-5", used=[{"promotionId": pa["id"]}]),  # A's promotion
        receipt_body(
            key="b@example.com",
            uid="B-6",
            originalUniqueReceiptId="R-A2",
            items=[item("100.00", sku="A", type_="RETURN", qty=-1)],
        ),  # fmt: skip
    ]
    data = write_transactions([Receipt.model_validate(body) for body in receipts])
    _, records = transfer.process(TRANSACTION_IMPORT_DIR, "20260310120000_B_transactions.xml", data, b)
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 6, records
    assert records[0].reason is None  # a new receipt of B's, not A's duplicate
    assert records[1].reason == records[2].reason == "PendingContactMatch"
    assert "PromotionNotFound" in (records[3].reason or "") and coupon in (records[3].reason or "")
    assert "PromotionNotFound" in (records[4].reason or "")
    assert "OriginalReceiptNotFound" in (records[5].reason or "")
    assert (snapshot(url, a["tenantId"]), _receipt_rows(url, a["tenantId"])) == before
    items = api.get(f"/api/v2/contacts/{ca['id']}/promotions").json()
    assert [i["id"] for i in items] == [coupon]  # A's coupon is still A's to redeem
    assert api.get(f"/api/v2/contacts/{ca['id']}/transactions").json()["totalCount"] == 1
    # ... and the very same file from A is what A's data makes of it: a duplicate, a match, a redemption
    _, mine = transfer.process(TRANSACTION_IMPORT_DIR, "20260310120001_A_transactions.xml",
                               write_transactions([Receipt.model_validate(receipt_body(key="shared@example.com",
                                                   uid="R-A", used=[{"couponId": coupon}]))]))  # fmt: skip
    assert mine[0].verdict is Verdict.DUPLICATE


def test_contact_files_never_reach_another_tenants_contacts(transfer):
    """A's contact GUID is notFound for B (as a GUID of nowhere, with the same words), A's e-mail and member
    number create B's own contact; A's contact does not change."""
    api = transfer.api
    a = api.tenant
    url = api.settings.resolved_database_url()
    ca = new_contact(api, email="anna@example.com", memberNumber="M-1", firstName="Anna")
    b = api.new_tenant()
    before = snapshot(url, a["tenantId"])
    nowhere = str(uuid.uuid4())
    data = write_contacts([
        ContactRecord(contact_id=ca["id"], attributes={"firstName": "Mallory"}),
        ContactRecord(contact_id=nowhere, attributes={"firstName": "Mallory"}),
        ContactRecord(contact_id=ca["id"], attributes={"email": "not an e-mail"}),
        ContactRecord(contact_id=nowhere, attributes={"email": "not an e-mail"}),
        ContactRecord(attributes={"email": "anna@example.com", "firstName": "Bea"}),
        ContactRecord(attributes={"email": "bo@example.com", "memberNumber": "M-1", "firstName": "Bo"}),
    ])  # fmt: skip
    _, records = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_B_contacts.xml", data, b)
    assert records[0].verdict is records[1].verdict is Verdict.NOT_FOUND
    assert records[2].verdict is records[3].verdict
    for theirs, control in ((records[0], records[1]), (records[2], records[3])):
        assert theirs.contact_id is None
        assert (theirs.reason or "").replace(ca["id"], "?") == (control.reason or "").replace(nowhere, "?")
    assert [r.verdict for r in records[4:]] == [Verdict.APPLIED, Verdict.APPLIED]
    assert records[4].reason == records[5].reason == "created"
    assert {records[4].contact_id, records[5].contact_id}.isdisjoint({ca["id"], None})
    assert snapshot(url, a["tenantId"]) == before
    got = api.get(f"/api/v2/contacts/{ca['id']}").json()["attributes"]
    assert got["firstName"] == "Anna"
    found = api.get("/api/v2/contacts/id", params={"email": "anna@example.com"}, headers=api.as_tenant(b))
    assert found.json() == records[4].contact_id


def test_promotion_files_never_reach_another_tenants_promotions_contacts_or_codes(transfer):
    """A's external promotion id (unchanged for A: a duplicate), A's promotion to assign, A's contact by GUID and
    by externalId, A's promotion code: B creates its own promotion, the assignments naming A's are notFound,
    and A's code is free for B to use."""
    api = transfer.api
    a = api.tenant
    url = api.settings.resolved_database_url()
    ca = new_contact(api, externalId="EXT-C")
    new_promotion(api, external_id="EXT-A", name="A's")
    new_promotion(api, external_id="ONLY-A", name="A's other")
    _, mine = transfer.process(PROMOTION_IMPORT_DIR, "20260310115900_A_promotions.xml", write_promotions([
        PromotionAssignment(external_promotion_id="EXT-A", contact_id=ca["id"], external_promotion_code_id="CODE-A"),
    ]))  # fmt: skip
    assert mine[0].verdict is Verdict.APPLIED

    b = api.new_tenant()
    hb = api.as_tenant(b)
    cb = new_contact(api, headers=hb, externalId="EXT-B")
    before = snapshot(url, a["tenantId"])
    data = write_promotions([
        PromotionUpsert(promotion_name="A's", external_promotion_id="EXT-A"),  # for A: unchanged, a duplicate
        PromotionAssignment(external_promotion_id="ONLY-A", contact_id=cb["id"]),
        PromotionAssignment(external_promotion_id="EXT-A", contact_id=ca["id"]),
        PromotionAssignment(external_promotion_id="EXT-A", external_contact_id="EXT-C"),
        PromotionAssignment(external_promotion_id="EXT-A", contact_id=cb["id"], external_promotion_code_id="CODE-A"),
    ])  # fmt: skip
    _, records = transfer.process(PROMOTION_IMPORT_DIR, "20260310120000_B_promotions.xml", data, b)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED, Verdict.NOT_FOUND, Verdict.NOT_FOUND, Verdict.NOT_FOUND, Verdict.APPLIED,
    ]  # fmt: skip
    assert "created promotion" in (records[0].reason or "")
    assert records[4].contact_id == cb["id"]
    for r in records[1:4]:
        _no_detail(r)
    assert snapshot(url, a["tenantId"]) == before
    theirs = api.get("/api/v2/promotions/multichannels", params={"externalId": "EXT-A"}, headers=hb).json()
    ours = api.get("/api/v2/promotions/multichannels", params={"externalId": "EXT-A"}).json()
    assert theirs["id"] != ours["id"]
