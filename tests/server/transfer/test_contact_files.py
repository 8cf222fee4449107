"""Contact files: a record names its contact by GUID, by key (``matchKey``: update only), or not at all (create,
or update the contact holding its key: an upsert, as Engage's contact import does). On both databases."""

from __future__ import annotations

from typing import Any

from promoflow.wire.xml import CONTACT_IMPORT_DIR, ContactRecord, Verdict, write_contacts
from tests.server._support import new_contact


def _attributes(api: Any, contact_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v2/contacts/{contact_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["attributes"])


def _count(api: Any) -> int:
    return int(api.get("/api/v2/contacts/count").json())


def test_a_record_named_by_its_key_updates_that_contact_and_never_creates_one(transfer: Any) -> None:
    api = transfer.api
    anna = new_contact(
        api, email="anna@example.com", firstName="Anna", memberNumber="M-1", mobilePhone="+46701111111"
    )
    before = _count(api)
    data = write_contacts([
        ContactRecord(match_key="ANNA@example.com", match_key_type="email", attributes={"lastName": "Berg"}),
        ContactRecord(match_key="M-1", match_key_type="memberNumber", attributes={"city": "Lund"}),
        ContactRecord(match_key="+46701111111", match_key_type="any", attributes={"mobilePhone": ""}),
        ContactRecord(match_key="nobody@example.com", match_key_type="email", attributes={"firstName": "X"}),
        ContactRecord(match_key="not an e-mail", match_key_type="email", attributes={"firstName": "Y"}),
    ])  # fmt: skip
    summary, records = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_1_contacts.xml", data)
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 3 + [Verdict.NOT_FOUND, Verdict.INVALID]
    assert [r.contact_id for r in records[:3]] == [anna["id"]] * 3
    assert records[0].reason == "updated" and records[0].key == "ANNA@example.com"
    assert "no contact has email 'nobody@example.com'" in (records[3].reason or "")
    assert "InvalidEmailAddress" in (records[4].reason or "")
    got = _attributes(api, anna["id"])
    assert (got["firstName"], got["lastName"], got["city"]) == ("Anna", "Berg", "Lund")
    assert "mobilePhone" not in got  # an empty element clears, by key as by GUID
    assert _count(api) == before  # the unknown key created nobody
    assert summary.total == 5


def test_a_create_whose_key_exists_updates_that_contact_with_the_values_given(transfer: Any) -> None:
    # The documented decision: Engage's contact import upserts by key (the API's create does not).
    api = transfer.api
    known = new_contact(api, email="known@example.com", firstName="Old", lastName="Kept")
    data = write_contacts([ContactRecord(attributes={"email": "KNOWN@example.com", "firstName": "New"})])
    _, (record,) = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_2_contacts.xml", data)
    assert (record.verdict, record.reason, record.contact_id) == (Verdict.APPLIED, "updated", known["id"])
    got = _attributes(api, known["id"])
    assert (got["firstName"], got["lastName"]) == ("New", "Kept")
    # The API's create of the same key still leaves the contact as it is (A11).
    r = api.post("/api/v2/contacts", json={"email": "known@example.com", "firstName": "Api"})
    assert r.status_code == 200 and r.json()["attributes"]["firstName"] == "New"


def test_records_of_one_contact_apply_in_document_order(transfer: Any) -> None:
    # A till's outbox sends a create and then changes of the same customer by key: the last one wins.
    api = transfer.api
    data = write_contacts([
        ContactRecord(attributes={"email": "order@example.com", "firstName": "First"}),
        ContactRecord(match_key="order@example.com", match_key_type="email", attributes={"firstName": "Second"}),
        ContactRecord(match_key="order@example.com", match_key_type="email", attributes={"firstName": "Third"}),
    ])  # fmt: skip
    _, records = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_3_contacts.xml", data)
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 3
    assert records[0].reason == "created" and len({r.contact_id for r in records}) == 1
    assert _attributes(api, str(records[0].contact_id))["firstName"] == "Third"


def test_a_key_of_another_tenants_contact_is_not_found(transfer: Any) -> None:
    api = transfer.api
    other = api.new_tenant()
    theirs = new_contact(api, api.as_tenant(other), email="theirs@example.com", firstName="Theirs")
    data = write_contacts(
        [
            ContactRecord(
                match_key="theirs@example.com", match_key_type="email", attributes={"firstName": "Mine"}
            )
        ]
    )
    _, (record,) = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_4_contacts.xml", data)
    assert record.verdict is Verdict.NOT_FOUND and record.contact_id is None
    got = api.get(f"/api/v2/contacts/{theirs['id']}", headers=api.as_tenant(other)).json()["attributes"]
    assert got["firstName"] == "Theirs"


def test_a_refused_field_is_skipped_and_named_and_the_others_are_applied(transfer: Any) -> None:
    """Part B §9.3: a contact import validates field by field. A mistyped phone number does not lose the customer
    registered offline; a record whose key itself is refused creates nothing."""
    api = transfer.api
    before = _count(api)
    data = write_contacts([
        ContactRecord(attributes={"email": "pf@example.com", "mobilePhone": "12", "firstName": "PerField"}),
        ContactRecord(match_key="pf@example.com", match_key_type="email",
                      attributes={"city": "Lund", "socialSecurityNumber": "not-a-number"}),
        ContactRecord(attributes={"email": "not an e-mail", "firstName": "Nobody"}),
    ])  # fmt: skip
    _, records = transfer.process(CONTACT_IMPORT_DIR, "20260310120000_9_contacts.xml", data)
    assert [r.verdict for r in records] == [Verdict.APPLIED, Verdict.APPLIED, Verdict.INVALID]
    assert (records[0].reason or "").startswith("created; skipped mobilePhone (InvalidPhoneNumber: ")
    assert (records[1].reason or "").startswith(
        "updated; skipped socialSecurityNumber (InvalidSocialSecurityNumber"
    )
    assert "key attribute 'email'; refused email (InvalidEmailAddress: " in (records[2].reason or "")
    got = _attributes(api, str(records[0].contact_id))
    assert (got["email"], got["firstName"], got["city"]) == ("pf@example.com", "PerField", "Lund")
    assert "mobilePhone" not in got and "socialSecurityNumber" not in got
    assert _count(api) == before + 1
