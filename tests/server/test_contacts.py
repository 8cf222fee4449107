"""Contacts (A11, Part B §6): create (201) or find the existing key (200, unchanged), read shape, partial update,
key conflicts, look-up by every parameter, count."""

from __future__ import annotations

import re
from typing import Any

from ._support import GUID_TEXT, assert_error, new_contact, snapshot


def test_create_answers_201_with_engages_contact_shape(api: Any) -> None:
    """v2 answers are Engage's `IApiContact` (type in `meta`); v3 answers add A11's top-level `contactType`."""
    r = api.post(
        "/api/v2/contacts",
        json={"email": " Ada@Example.com ", "firstName": "Ada", "preferences": {"acceptsEmail": True}},
        headers={**api.headers, "source": "POS", "storeExternalId": "S1"},
    )
    assert r.status_code == 201
    c = r.json()
    assert set(c) == {"id", "attributes", "preferences", "meta", "consents"}
    assert re.match(GUID_TEXT, c["id"])
    # The key is normalised; a memberNumber (the default customKey) is assigned when none is given.
    assert c["attributes"] == {"email": "ada@example.com", "firstName": "Ada", "memberNumber": "00000001"}
    assert c["preferences"] == {"acceptsEmail": True}
    meta = c["meta"]
    assert meta["contactType"] == "Member" and meta["source"] == "POS" and meta["storeExternalId"] == "S1"
    assert meta["createdOn"] == "2026-03-10T13:00:00+01:00" and meta["isApproved"] is True
    assert api.get(f"/api/v2/contacts/{c['id']}").json() == c
    assert api.get(f"/api/v3/contacts/{c['id']}").json() == {**c, "contactType": "Member"}


def test_v3_create_takes_source_and_store_from_the_query(api: Any) -> None:
    r = api.post(
        "/api/v3/contacts?source=ECOM&storeExternalId=WEB&createAsUnapproved=true",
        json={"email": "v3@example.com", "contactType": "contact"},
        headers={**api.headers, "source": "ignored"},
    )
    assert r.status_code == 201
    c = r.json()
    assert c["contactType"] == "Contact"
    assert (c["meta"]["source"], c["meta"]["storeExternalId"], c["meta"]["isApproved"]) == (
        "ECOM",
        "WEB",
        False,
    )


def test_create_of_an_existing_key_is_200_with_the_contact_unchanged(api: Any) -> None:
    first = new_contact(api, email="ada@example.com", firstName="Ada")
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    again = api.post("/api/v2/contacts", json={"email": "ADA@example.com", "firstName": "Someone else"})
    assert again.status_code == 200
    assert again.json() == first
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before
    # The key is per contact type: the same e-mail as a Contact is another contact.
    other = api.post("/api/v2/contacts", json={"email": "ada@example.com", "contactType": "Contact"})
    assert other.status_code == 201 and other.json()["id"] != first["id"]


def test_a_given_member_number_is_kept_and_a_taken_one_is_a_conflict(api: Any) -> None:
    c = new_contact(api, memberNumber="M-77")
    assert c["attributes"]["memberNumber"] == "M-77"
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    r = api.post("/api/v2/contacts", json={"email": "other@example.com", "memberNumber": "M-77"})
    assert_error(r, 409, "ContactKeyConflict")
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before


def test_update_is_partial(api: Any) -> None:
    c = new_contact(
        api,
        email="ada@example.com",
        firstName="Ada",
        lastName="Byron",
        city="London",
        zipCode="123",
        preferences={"acceptsEmail": True, "acceptsSms": False},
    )
    api.clock.advance(__import__("datetime").timedelta(hours=1))
    r = api.post(
        f"/api/v2/contacts/{c['id']}",
        json={
            "lastName": "Lovelace",  # present: overwrites
            "city": None,  # null: clears
            "zipCode": "",  # "": clears
            "favouriteColour": "green",  # unknown: ignored
            "preferences": {"acceptsSms": True},
        },
    )
    assert r.status_code == 200
    u = r.json()
    assert u["attributes"] == {
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "memberNumber": "00000001",
    }
    assert u["preferences"] == {"acceptsEmail": True, "acceptsSms": True}
    assert u["meta"]["modifiedOn"] == "2026-03-10T14:00:00+01:00"
    assert u["meta"]["createdOn"] == c["meta"]["createdOn"]
    v3 = api.patch(
        f"/api/v3/contacts/{c['id']}", json={"firstName": "Augusta Ada", "email": "ADA.L@example.com"}
    )
    assert v3.status_code == 200
    assert v3.json()["attributes"]["firstName"] == "Augusta Ada"
    assert v3.json()["attributes"]["email"] == "ada.l@example.com"
    # The new key finds the contact; the old one no longer does.
    assert api.get("/api/v2/contacts/id?email=ada.l@example.com").json() == c["id"]
    assert_error(api.get("/api/v2/contacts/id?email=ada@example.com"), 404, "ContactNotFound")


def test_changing_the_key_to_another_contacts_key_is_409_and_changes_nothing(api: Any) -> None:
    ada = new_contact(api, email="ada@example.com", memberNumber="A1")
    new_contact(api, email="grace@example.com", memberNumber="G1")
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    assert_error(
        api.post(f"/api/v2/contacts/{ada['id']}", json={"email": "GRACE@example.com"}),
        409,
        "ContactKeyConflict",
    )
    assert_error(
        api.patch(f"/api/v3/contacts/{ada['id']}", json={"memberNumber": "G1"}), 409, "ContactKeyConflict"
    )
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before
    # Setting a contact's key to its own value is no conflict.
    assert api.post(f"/api/v2/contacts/{ada['id']}", json={"email": "ada@example.com"}).status_code == 200


def test_update_of_an_unknown_contact_is_404(api: Any) -> None:
    import uuid

    assert_error(
        api.post(f"/api/v2/contacts/{uuid.uuid4()}", json={"firstName": "x"}), 404, "ContactNotFound"
    )
    assert_error(api.get(f"/api/v2/contacts/{uuid.uuid4()}"), 404, "ContactNotFound")


def test_look_up_by_each_parameter(api: Any) -> None:
    ada = new_contact(
        api, email="ada@example.com", mobilePhone="+46 70-123 45 67", socialSecurityNumber="19121212-1212"
    )
    grace = new_contact(api, email="grace@example.com", memberNumber="G-1", contactType="Contact")
    cases = {
        "email=ADA@example.com": ada,
        "mobilePhone=%2B46701234567": ada,
        "mobilePhone=0046701234567": ada,
        "socialSecurityNumber=191212121212": ada,
        "customKey=00000001": ada,
        "customKey=G-1": grace,
        "email=ada@example.com&contactType=Member": ada,
        "email=grace@example.com&contactType=contact": grace,
        # any: tried as email, then socialSecurityNumber, then mobilePhone, then the custom key
        "any=ada@example.com": ada,
        "any=191212121212": ada,
        "any=%2B46701234567": ada,
        "any=G-1": grace,
        # a member number as the server hands them out: "00…" is no phone number (no country code starts with 0)
        "any=00000001": ada,
    }
    for query, who in cases.items():
        for version in ("v2", "v3"):
            r = api.get(f"/api/{version}/contacts/id?{query}")
            assert r.status_code == 200, (query, r.text)
            assert r.headers["content-type"].startswith("application/json")
            assert r.json() == who["id"], query  # the GUID as a JSON string
            assert r.text == f'"{who["id"]}"'


def test_look_up_misses_and_ambiguity(api: Any) -> None:
    new_contact(api, email="a1@example.com", mobilePhone="+46700000001")
    new_contact(api, email="a2@example.com", mobilePhone="+46700000001")
    assert_error(api.get("/api/v2/contacts/id?mobilePhone=%2B46700000001"), 409, "MultipleMatches")
    assert_error(api.get("/api/v2/contacts/id?email=nobody@example.com"), 404, "ContactNotFound")
    assert_error(
        api.get("/api/v2/contacts/id?email=a1@example.com&contactType=Contact"), 404, "ContactNotFound"
    )
    # `any` stops at the first attribute the value validates as, even without a match: an e-mail that matches
    # nobody is not tried as a custom key.
    new_contact(api, email="x@example.com", memberNumber="m@example.com")
    assert_error(api.get("/api/v2/contacts/id?any=m@example.com"), 404, "ContactNotFound")
    assert_error(api.get("/api/v2/contacts/id?email=not-an-email"), 400, "InvalidEmailAddress")
    assert_error(api.get("/api/v2/contacts/id?mobilePhone=abc"), 400, "InvalidPhoneNumber")
    assert_error(api.get("/api/v2/contacts/id?mobilePhone=%2B0701234567"), 400, "InvalidPhoneNumber")


def test_count_is_a_bare_integer(api: Any) -> None:
    assert api.get("/api/v2/contacts/count").json() == 0
    for _ in range(3):
        new_contact(api)
    r = api.get("/api/v2/contacts/count")
    assert r.status_code == 200 and r.text == "3"
    assert api.get("/api/v3/contacts/count").json() == 3


def test_a_tenant_can_key_contacts_by_another_attribute(api: Any) -> None:
    """The key attribute is tenant configuration: here Members are keyed by mobile phone."""
    import asyncio
    from datetime import UTC, datetime

    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService

    async def configure() -> None:
        db = Database(api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(
                    conn, api.tenant["name"], {"contactKeys": {"Member": "mobilePhone", "Contact": "email"}}
                )
        finally:
            await db.dispose()

    asyncio.run(configure())
    h = api.headers
    assert_error(
        api.post("/api/v2/contacts", json={"email": "a@example.com"}, headers=h), 400, "MissingKeyAttribute"
    )
    first = api.post("/api/v2/contacts", json={"mobilePhone": "+46701111111", "email": "a@example.com"})
    assert first.status_code == 201
    again = api.post("/api/v2/contacts", json={"mobilePhone": "0046701111111", "email": "b@example.com"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["attributes"]["email"] == "a@example.com"
