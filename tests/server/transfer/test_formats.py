"""Contact, promotion and transaction files over the real FTP server, each through the API's own services."""

from __future__ import annotations

from datetime import date

from promoflow.wire.engage import Receipt
from promoflow.wire.xml import (
    CONTACT_IMPORT_DIR,
    PROMOTION_IMPORT_DIR,
    TRANSACTION_IMPORT_DIR,
    ContactRecord,
    ImportChannel,
    PromotionAssignment,
    PromotionUpsert,
    Verdict,
    write_contacts,
    write_promotions,
    write_transactions,
)
from tests.server._support import assign, channel, new_contact, new_promotion
from tests.server.receipt.conftest import receipt_body


def test_contact_file_creates_and_updates_and_reports_every_guid(transfer):
    api = transfer.api
    known = new_contact(api, email="known@example.com", firstName="Old")
    name = "20260310120000_1_contacts.xml"
    data = write_contacts([
        ContactRecord(attributes={"email": "new@example.com", "firstName": "Ada"}),
        ContactRecord(contact_id=known["id"], attributes={"lastName": "Lovelace"}),
        ContactRecord(attributes={"email": "known@example.com", "firstName": "New"}),
        ContactRecord(attributes={"email": "not an e-mail"}),
        ContactRecord(contact_id="6f9619ff-8b86-d011-b42d-00cf4fc964ff", attributes={"firstName": "X"}),
    ])  # fmt: skip
    summary, records = transfer.process(CONTACT_IMPORT_DIR, name, data)
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 3 + [Verdict.INVALID, Verdict.NOT_FOUND]
    created = records[0].contact_id
    assert created and records[0].reason == "created"
    assert records[1].contact_id == records[2].contact_id == known["id"]
    assert "InvalidEmailAddress" in (records[3].reason or "")
    # the GUID in the result is the contact the API knows
    r = api.get("/api/v2/contacts/id", params={"email": "new@example.com"})
    assert r.json() == created
    got = api.get(f"/api/v2/contacts/{known['id']}").json()["attributes"]
    assert (got["firstName"], got["lastName"]) == ("New", "Lovelace")
    assert summary.counts[Verdict.APPLIED] == 3 and summary.total == 5


def test_promotion_file_creates_updates_and_assigns_in_document_order(transfer):
    api = transfer.api
    c = new_contact(api, externalId="EXT-1")
    new_promotion(api, external_id="ACTIVE-1", name="Active one")
    name = "20260310120000_1_promotions.xml"
    data = write_promotions([
        PromotionUpsert(promotion_name="Spring", external_promotion_id="SPRING", valid_from_date=date(2026, 3, 1),
                        valid_to_date=date(2026, 5, 31),
                        redemption_channels=[ImportChannel(type="POS", value_type="PERCENT", value="15")]),
        PromotionAssignment(external_promotion_id="SPRING", contact_id=c["id"], external_promotion_code_id="CODE-1"),
        PromotionAssignment(external_promotion_id="SPRING", external_contact_id="EXT-1",
                            external_promotion_code_id="CODE-1"),
        PromotionUpsert(promotion_name="Draft only", external_promotion_id="DRAFT", published=False),
        PromotionAssignment(external_promotion_id="DRAFT", contact_id=c["id"], valid_from_date=date(2026, 4, 1)),
        PromotionUpsert(promotion_name="Active one", external_promotion_id="ACTIVE-1", valid_from_date=date(2026, 1, 1),
                        valid_to_date=date(2026, 12, 31)),
        PromotionUpsert(promotion_name="Renamed", external_promotion_id="ACTIVE-1"),
        PromotionAssignment(external_promotion_id="NOPE", contact_id=c["id"]),
        PromotionAssignment(external_promotion_id="SPRING", external_contact_id="nobody"),
    ])  # fmt: skip
    _, records = transfer.process(PROMOTION_IMPORT_DIR, name, data)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED, Verdict.APPLIED, Verdict.DUPLICATE, Verdict.APPLIED, Verdict.APPLIED,
        Verdict.DUPLICATE, Verdict.APPLIED, Verdict.NOT_FOUND, Verdict.NOT_FOUND,
    ]  # fmt: skip
    # an active promotion's name may change by file (issue 11 §11: createOrUpdate updates; was PromotionNotDraft)
    assert "updated promotion" in (records[6].reason or "") and "name" in (records[6].reason or "")
    renamed = api.get("/api/v2/promotions/multichannels", params={"externalId": "ACTIVE-1"}).json()
    assert renamed["name"] == "Renamed" and renamed["status"] == "Active"
    spring = api.get("/api/v2/promotions/multichannels", params={"externalId": "SPRING"}).json()
    assert spring["status"] == "Active"
    assert spring["presentation"]["heading"] == "Spring"  # Engage's default: the name
    assert [ch["valueType"] for ch in spring["redemptionChannels"]] == ["PERCENT"]
    draft = api.get("/api/v2/promotions/multichannels", params={"externalId": "DRAFT"}).json()
    assert draft["status"] == "Active"  # published by its first assignment
    assert {ch["type"] for ch in draft["redemptionChannels"]} == {"ECOM", "POS"}
    mine = api.get(
        "/api/v3/promotion-assignments", params={"contactId": c["id"], "includeRedeemed": "true"}
    ).json()
    by_ext = {i["externalId"]: i for i in mine}
    assert sorted(by_ext) == ["DRAFT", "SPRING"]
    assert by_ext["DRAFT"]["validFrom"] == "2026-04-01T00:00:00+02:00"  # the record's validFromDate
    assert records[1].reason and by_ext["SPRING"]["id"] in records[1].reason  # the coupon id is reported


def test_transaction_file_ingests_receipts_like_the_api(transfer):
    api = transfer.api
    c = new_contact(api, email="buyer@example.com")
    promo = new_promotion(api, channels=[channel("POS")])
    coupon = assign(api, c["id"], promo["id"])["id"]
    r = api.post("/api/v2/receipts", json=receipt_body(key="buyer@example.com", uid="API-1"))
    assert r.status_code == 200, r.text
    receipts = [
        receipt_body(key="buyer@example.com", uid="F-1", used=[{"couponId": coupon}]),
        receipt_body(key="buyer@example.com", uid="API-1"),
        receipt_body(key="later@example.com", uid="F-2"),
    ]
    name = "20260310120000_471_transactions.xml"
    data = write_transactions([Receipt.model_validate(body) for body in receipts])
    # one receipt that breaks the XSD (an item without its required fields): invalid, the others go on
    data = data.replace(b"</transactions>", b"<transaction><uniqueReceiptId>BAD</uniqueReceiptId></transaction>\n"
                        b"</transactions>")  # fmt: skip
    summary, records = transfer.process(TRANSACTION_IMPORT_DIR, name, data)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED,
        Verdict.DUPLICATE,
        Verdict.APPLIED,
        Verdict.INVALID,
    ]
    assert records[2].reason and "PendingContactMatch" in records[2].reason
    assert records[3].key == "BAD"
    # the receipt redeemed the coupon it used, through the one redemption path
    items = api.get(f"/api/v2/contacts/{c['id']}/promotions", params={"includeRedeemed": "true"}).json()
    assert [i["redeemed"] for i in items] == [True]
    assert summary.status == "processed"
