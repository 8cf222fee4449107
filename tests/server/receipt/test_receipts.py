"""POST /api/v2|v3/receipts: stored in the request, Created / Duplicate, stores registered, history."""

from __future__ import annotations

import pytest

from tests.server.receipt.conftest import Flow, receipt_body


def test_receipt_created_then_duplicate_changes_nothing(flow: Flow) -> None:
    email = "ada@example.com"
    cid = flow.contact(email)
    body = receipt_body(key=email.upper(), key_type="EMAIL")
    r = flow.send(body)
    assert r.status_code == 200, r.text
    assert r.json() == {"uniqueReceiptId": body["uniqueReceiptId"], "status": "Created", "warnings": []}
    before = flow.tenant_rows()
    again = flow.send({**body, "totalGrossPrice": 150.0, "storeExternalId": "OTHER"}, v3=True)
    assert again.status_code == 200
    assert again.json()["status"] == "Duplicate"
    assert flow.tenant_rows() == before
    page = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()
    assert page["totalCount"] == 1 and page["count"] == 1 and page["offset"] == 0
    tx = page["items"][0]
    assert tx["uniqueReceiptId"] == body["uniqueReceiptId"] and tx["storeExternalId"] == "S1"
    assert tx["createdDate"] == "2026-03-10T13:00:00+01:00"
    assert tx["totalGrossPrice"] == 150 and tx["type"] == "PURCHASE" and len(tx["lineItems"]) == 2
    # Numbers come back as the JSON numbers they were sent as (quantities and rates too, not their text).
    sent = {i["sku"]: i for i in body["items"]}
    for line in tx["lineItems"]:
        for name in ("quantity", "grossPaidPrice", "taxAmount", "taxPercent"):
            if name in sent[line["sku"]]:
                assert line[name] == sent[line["sku"]][name] and not isinstance(line[name], str), (name, line)


def test_quick_and_full_path_store_the_same_receipt(flow: Flow) -> None:
    """A plain receipt takes the quick path (one statement on PostgreSQL, the fast lane's write group on SQLite);
    with an Idempotency-Key it takes the full path. Both must store the same row (and register the store
    alike), and answer a duplicate alike."""
    from sqlalchemy import select

    from promoflow.server.models.receipts import receipt, store
    from promoflow.server.receipt.quick import ANSWERED

    extras = flow.api.client.app.state.promoflow.extras  # type: ignore[attr-defined]
    email = "paths@example.com"
    cid = flow.contact(email)
    plain = receipt_body(key=email, store="QUICK", contact={"matchKey": email, "matchKeyType": "Email",
                                                            "contactType": "member"})  # fmt: skip
    keyed = {**plain, "uniqueReceiptId": plain["uniqueReceiptId"] + "-full", "storeExternalId": "FULL"}
    assert flow.send(plain).json()["status"] == "Created"
    assert extras.get(ANSWERED) == 1
    r = flow.send(keyed, headers={**flow.api.headers, "Idempotency-Key": "k-1"})
    assert r.json()["status"] == "Created" and r.headers.get("idempotent-replayed") is None
    assert extras.get(ANSWERED) == 1
    with flow.engine.connect() as conn:
        rows = {
            row.store_external_id: row._asdict()
            for row in conn.execute(select(receipt).where(receipt.c.tenant_id == flow.tenant_id))
        }
        stores = {
            row.external_id: (row.type, row.active)
            for row in conn.execute(select(store).where(store.c.tenant_id == flow.tenant_id))
        }
    quick, full = rows["QUICK"], rows["FULL"]
    assert quick["contact_id"] == full["contact_id"] == __import__("uuid").UUID(cid)
    for row in (quick, full):
        for name in ("id", "unique_receipt_id", "store_external_id"):
            row.pop(name)
        row["body"].pop("uniqueReceiptId")
        row["body"].pop("storeExternalId")
    assert quick == full
    assert stores == {"QUICK": ("RETAIL", True), "FULL": ("RETAIL", True)}
    assert flow.send(plain).json()["status"] == "Duplicate" and extras.get(ANSWERED) == 2
    assert flow.send(keyed, headers={**flow.api.headers, "Idempotency-Key": "k-1"}).headers[
        "idempotent-replayed"
    ]
    # No contact holds the key (yet): the full path keeps the receipt pending.
    waiting = receipt_body(key="nobody-yet@example.com", key_type="EMAIL")
    assert flow.send(waiting).json()["status"] == "PendingContactMatch" and extras.get(ANSWERED) == 2


@pytest.mark.parametrize(
    ("key_type", "attrs", "key"),
    [
        ("memberNumber", {"memberNumber": "M-77"}, "M-77"),
        ("MOBILEPHONE", {"mobilePhone": "+46701234567"}, "+46 70-123 45 67"),
        ("externalId", {"externalId": "ext-9"}, "ext-9"),
        ("socialSecurityNumber", {"socialSecurityNumber": "19811218-9876"}, "198112189876"),
        ("MemberNumberWithCardNumberAsFallback", {"memberNumber": "M-78"}, "M-78"),
    ],
)
def test_every_match_key_type_finds_its_contact(
    flow: Flow, key_type: str, attrs: dict[str, str], key: str
) -> None:
    cid = flow.contact(**attrs)
    r = flow.send(receipt_body(key=key, key_type=key_type))
    assert (r.status_code, r.json()["status"]) == (200, "Created"), r.text
    by_id = flow.send(receipt_body(key=cid.upper(), key_type="ContactId"), v3=True)
    assert (by_id.status_code, by_id.json()["status"]) == (200, "Created"), by_id.text
    assert flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()["totalCount"] == 2


def test_extensions_are_marked_in_the_openapi_document(flow: Flow) -> None:
    paths = flow.api.client.get("/openapi.json").json()["paths"]
    marked = {
        ("get", "/api/v2/stores"), ("get", "/api/v2/stores/{external_id}"), ("put", "/api/v2/stores/{external_id}"),
        ("get", "/api/v2/promotions/codes/{promotion_id}/events"),
        ("get", "/api/v3/promotion-assignments/{assignment_id}/events"),
        ("get", "/api/v2/reports/promotions/{promotion_id}"), ("get", "/api/v2/reports/promotions"),
    }  # fmt: skip
    for method, path in marked:
        assert paths[path][method].get("x-promoflow-extension") is True, (method, path)
    for path in ("/api/v2/receipts", "/api/v3/receipts"):
        op = paths[path]["post"]
        assert "x-promoflow-extension" not in op
        assert "ReceiptTotalMismatch" in op["responses"]["400"]["description"]
    assert "x-promoflow-extension" not in paths["/api/v2/contacts/{contact_id}/transactions"]["get"]
