"""A receipt whose contact is unknown is kept (202 PendingContactMatch) and is matched — its usedPromotions
applied — when a contact with that key is created or gets that key."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import sqlite as sqlite_dialect

from promoflow.server.db import connect_sqlite, sqlite_file
from promoflow.server.models.receipts import receipt, receipt_pending
from promoflow.server.receipt.pending import _sqlite_waiting_query, _waiting_for
from tests.server.receipt.conftest import Flow, receipt_body


def test_receipt_for_unknown_contact_is_kept_and_matched_on_create(flow: Flow) -> None:
    email = "later@example.com"
    body = receipt_body(key=email, used=[{"promotionId": str(uuid.uuid4())}])
    r = flow.send(body)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "uniqueReceiptId": body["uniqueReceiptId"],
        "status": "PendingContactMatch",
        "warnings": [],
    }
    assert flow.tenant_rows() == {"receipt": 1, "pending": 1, "links": 0, "store": 1}
    assert flow.send(body).json()["status"] == "Duplicate"
    other = flow.contact("unrelated@example.com")
    assert flow.api.get(f"/api/v2/contacts/{other}/transactions").json()["totalCount"] == 0
    assert flow.count(receipt_pending, receipt_pending.c.tenant_id == flow.tenant_id) == 1

    cid = flow.contact(email.upper())
    page = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()
    assert [t["uniqueReceiptId"] for t in page["items"]] == [body["uniqueReceiptId"]]
    # The used promotion could not be resolved: recorded on the receipt, which is still kept.
    [warning] = page["items"][0]["warnings"]
    assert warning.startswith("usedPromotions[0]: PromotionNotFound")
    assert flow.tenant_rows()["pending"] == 0
    assert flow.count(receipt, receipt.c.tenant_id == flow.tenant_id, receipt.c.status == "matched") == 1


def test_a_receipt_keyed_by_any_is_read_by_engages_any_rule(flow: Flow) -> None:
    """matchKeyType `any` (an extension: a till that identified its customer with `any` while offline sends its
    receipt so): the first of email, social security number and phone the key validates as, else the custom key;
    kept pending under that key when no contact holds it yet."""
    ada = flow.contact("ada@example.com")
    number = flow.api.get(f"/api/v2/contacts/{ada}").json()["attributes"]["memberNumber"]
    for key in ("ADA@example.com", number):
        r = flow.send(receipt_body(key=key, key_type="any"))
        assert (r.status_code, r.json()["status"]) == (200, "Created"), (key, r.text)
    assert flow.api.get(f"/api/v2/contacts/{ada}/transactions").json()["totalCount"] == 2
    r = flow.send(receipt_body(key="later-any@example.com", key_type="ANY"))
    assert r.status_code == 202 and r.json()["status"] == "PendingContactMatch"
    later = flow.contact("later-any@example.com")
    assert flow.api.get(f"/api/v2/contacts/{later}/transactions").json()["totalCount"] == 1


def test_pending_receipt_applies_its_promotions_when_a_contact_gets_the_key(flow: Flow) -> None:
    cid = flow.contact("member@example.com")
    pid = flow.promotion("POS")
    aid = flow.assign(cid, pid)
    flow.api.clock.advance(timedelta(hours=1))
    body = receipt_body(key="070-123 45 67", key_type="mobilePhone", used=[{"couponId": aid}],
                        created="2026-03-10T13:30:00+01:00")  # fmt: skip
    assert flow.send(body).status_code == 202
    assert flow.redemptions(aid) == 0

    flow.api.clock.advance(timedelta(days=2))
    r = flow.api.post(f"/api/v2/contacts/{cid}", json={"mobilePhone": "0701234567"})
    assert r.status_code == 200, r.text
    item = flow.item_of(cid, aid)
    assert item["redeemed"] and item["redeemedOn"] == "2026-03-10T13:30:00+01:00"
    assert flow.redemptions(aid) == 1 and flow.links(aid) == 1
    [tx] = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()["items"]
    assert tx["usedPromotions"] == [{"assignmentId": aid, "promotionId": pid, "kind": "redeemed"}]
    assert tx["warnings"] == []


def test_pending_match_respects_the_contact_type(flow: Flow) -> None:
    key = "typed@example.com"
    body = receipt_body(key=key, contact={"matchKey": key, "matchKeyType": "email", "contactType": "contact"})
    assert flow.send(body).status_code == 202
    member = flow.contact(key)  # a Member with that e-mail is not the Contact the receipt asked for
    assert flow.api.get(f"/api/v2/contacts/{member}/transactions").json()["totalCount"] == 0
    r = flow.api.post("/api/v2/contacts", json={"email": key, "contactType": "Contact"})
    assert r.status_code == 201, r.text
    assert flow.api.get(f"/api/v2/contacts/{r.json()['id']}/transactions").json()["totalCount"] == 1


def test_contact_history_is_newest_first_and_paged(flow: Flow) -> None:
    email = "history@example.com"
    cid = flow.contact(email)
    uids = []
    for hour in (9, 11, 10):
        body = receipt_body(key=email, created=f"2026-03-10T{hour:02d}:00:00+01:00")
        assert flow.send(body).status_code == 200
        uids.append((hour, body["uniqueReceiptId"]))
    newest_first = [u for _, u in sorted(uids, reverse=True)]
    page = flow.api.get(f"/api/v2/contacts/{cid}/transactions", params={"offset": 1, "count": 1}).json()
    assert page["totalCount"] == 3 and page["offset"] == 1 and page["count"] == 1
    assert [t["uniqueReceiptId"] for t in page["items"]] == newest_first[1:2]
    full = flow.api.get(f"/api/v2/contacts/{cid}/transactions").json()
    assert [t["uniqueReceiptId"] for t in full["items"]] == newest_first
    assert (
        flow.api.get(f"/api/v2/contacts/{uuid.uuid4()}/transactions").json()["errorCode"] == "ContactNotFound"
    )
    assert flow.api.get("/api/v2/contacts/nope/transactions").json()["errorCode"] == "InvalidContactId"


def test_on_sqlite_the_waiting_receipts_are_found_by_whole_key_look_ups(sqlite_url: str) -> None:
    """The question the contact writes ask (is a receipt waiting for one of these keys?) and the routed match's
    look-up use the whole key index — tenant, key type and value — for each key, without statistics: with the
    tenant outside the OR of the keys SQLite searched the index by tenant alone, through every receipt the tenant
    has waiting."""
    conn = connect_sqlite(sqlite_file(sqlite_url) or "", writer=False)
    keys = [("contactId", "c"), ("email", "a@example.com"), ("memberNumber", "M1")]

    def searches(sql: str, params: Any = ()) -> list[str]:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return [row[3] for row in plan if "receipt_pending" in row[3]]

    routed = select(receipt_pending.c.receipt_id).where(_waiting_for(uuid.uuid4(), "Member", keys))
    compiled = routed.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True})
    for found in (searches(*_sqlite_waiting_query(uuid.uuid4(), "Member", keys)), searches(str(compiled))):
        assert len(found) == len(keys)
        assert all("(tenant_id=? AND key_type=? AND key_value=?)" in s for s in found), found
    conn.close()
