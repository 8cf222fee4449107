"""POST /api/v2|v3/receipts: stored in the request, Created / Duplicate, stores registered, history."""

from __future__ import annotations

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
