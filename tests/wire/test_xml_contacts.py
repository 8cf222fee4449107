"""Contact files: attributes as child elements, read into the flat JSON body of the contact API."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from promoflow.wire.xml import (
    CONTACTS_NAMESPACE,
    ContactRecord,
    Record,
    RecordError,
    read_contacts,
    write_contacts,
    xsd_file,
)
from tests.wire._samples import GUID, text

XSD = etree.XMLSchema(etree.parse(str(xsd_file("contacts"))))

SAMPLE = f"""<?xml version="1.0" encoding="utf-8"?>
<contacts>
  <contact>
    <firstName>Anna</firstName>
    <lastName>Svensson</lastName>
    <email>anna@example.se</email>
    <mobilePhone>+46701234567</mobilePhone>
    <memberNumber>90154424</memberNumber>
    <preferences><acceptsEmail>true</acceptsEmail><acceptsSms>0</acceptsSms></preferences>
  </contact>
  <contact>
    <contactId>{GUID.upper()}</contactId>
    <contactType>Member</contactType>
    <mobilePhone/>
  </contact>
</contacts>
""".encode()

attribute_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True).filter(
    lambda name: (
        name not in {"contactId", "contactType", "preferences", "matchKey", "matchKeyType"}
        and not name.lower().startswith("xml")
    )
)
# How the record names its contact: not at all (create, or upsert by key), by GUID, or by key.
identities = st.one_of(
    st.just({}),
    st.uuids().map(lambda guid: {"contact_id": str(guid)}),
    st.builds(
        lambda key, kind: {"match_key": key, "match_key_type": kind},
        text(40).filter(lambda value: value.strip() != "" and " " not in value),
        st.sampled_from(
            ["email", "mobilePhone", "socialSecurityNumber", "memberNumber", "externalId", "any"]
        ),
    ),
)
contacts = st.builds(
    lambda attributes, identity, contact_type, preferences: ContactRecord(
        attributes=attributes, contact_type=contact_type, preferences=preferences, **identity
    ),
    attributes=st.dictionaries(attribute_names, st.just("") | text(40), min_size=1, max_size=6),
    identity=identities,
    contact_type=st.none() | st.sampled_from(["Member", "Contact"]),
    preferences=st.none()
    | st.fixed_dictionaries(
        {},
        optional={"acceptsEmail": st.booleans(), "acceptsSms": st.booleans(), "acceptsPostal": st.booleans()},
    ),
)


@settings(max_examples=100, deadline=None)
@given(items=st.lists(contacts, max_size=4))
def test_round_trip(items: list[ContactRecord]) -> None:
    data = write_contacts(items)
    XSD.assertValid(etree.fromstring(data))
    read = list(read_contacts(data))
    assert [item.value for item in read if isinstance(item, Record)] == items, read


def test_sample_becomes_the_json_bodies() -> None:
    XSD.assertValid(etree.fromstring(SAMPLE))
    first, second = (item.value for item in read_contacts(SAMPLE) if isinstance(item, Record))
    assert first.contact_id is None
    assert first.body() == {
        "firstName": "Anna",
        "lastName": "Svensson",
        "email": "anna@example.se",
        "mobilePhone": "+46701234567",
        "memberNumber": "90154424",
        "preferences": {"acceptsEmail": True, "acceptsSms": False},
    }
    assert second.contact_id == GUID
    assert second.body() == {"mobilePhone": "", "contactType": "Member"}  # empty clears the attribute


def test_namespace_of_choice_is_accepted() -> None:
    data = SAMPLE.replace(b"<contacts>", f'<contacts xmlns="{CONTACTS_NAMESPACE}">'.encode())
    assert [r.value for r in read_contacts(data)] == [r.value for r in read_contacts(SAMPLE)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<contactId>123</contactId><email>a@b.se</email>", "contactId"),
        ("<email>a@b.se</email><email>c@d.se</email>", "email: given twice"),
        ("<address><street>x</street></address>", "address: an attribute holds text only"),
        ("<contactType>Member</contactType>", "at least one attribute, a contactId or a matchKey"),
        ("<matchKey>a@b.se</matchKey><firstName>A</firstName>", "matchKey and matchKeyType go together"),
        (
            "<matchKeyType>email</matchKeyType><firstName>A</firstName>",
            "matchKey and matchKeyType go together",
        ),
        (
            "<matchKey>a@b.se</matchKey><matchKeyType>shoeSize</matchKeyType>",
            "matchKeyType 'shoeSize' is none",
        ),
        (
            f"<contactId>{GUID}</contactId><matchKey>a@b.se</matchKey><matchKeyType>email</matchKeyType>",
            "by contactId or by matchKey, not both",
        ),
        ("", "Missing child element"),
        ("<email>a@b.se</email><preferences><acceptsEmail>yes</acceptsEmail></preferences>", "acceptsEmail"),
        ("<email>a@b.se</email><preferences><acceptsFax>1</acceptsFax></preferences>", "acceptsFax"),
        ('<x:email xmlns:x="urn:other">a@b.se</x:email>', "not expected"),
        ("<contactType/><email>a@b.se</email>", "contactType"),
    ],
)
def test_bad_contacts_are_per_record(body: str, reason: str) -> None:
    data = f"<contacts><contact>{body}</contact><contact><email>ok@b.se</email></contact></contacts>".encode()
    bad, good = read_contacts(data)
    assert isinstance(bad, RecordError) and reason in bad.reason, bad
    assert isinstance(good, Record)


def test_error_key_is_the_best_identifier_at_hand() -> None:
    data = b"<contacts><contact><memberNumber>7</memberNumber><email>a@b.se</email><email>x</email></contact></contacts>"
    (error,) = read_contacts(data)
    assert isinstance(error, RecordError) and error.key == "a@b.se"


def test_writer_refuses_names_that_are_not_attributes() -> None:
    with pytest.raises(ValueError, match="attribute name"):
        ContactRecord(attributes={"first name": "A"})
    with pytest.raises(ValueError, match="attribute name"):
        ContactRecord(attributes={"contactId": GUID})


def test_a_contact_named_by_its_key_is_an_update_of_that_contact() -> None:
    data = (
        b"<contacts><contact><matchKey> 90154424 </matchKey><matchKeyType>MEMBERNUMBER</matchKeyType>"
        b"<mobilePhone>+46701234567</mobilePhone></contact>"
        b"<contact><matchKey>anna@example.se</matchKey><matchKeyType>email</matchKeyType></contact></contacts>"
    )
    XSD.assertValid(etree.fromstring(data))
    first, second = (item.value for item in read_contacts(data) if isinstance(item, Record))
    assert (first.match_key, first.match_key_type, first.contact_id) == ("90154424", "memberNumber", None)
    assert first.is_update and first.body() == {"mobilePhone": "+46701234567"}
    assert second.is_update and second.attributes == {}  # a key alone: nothing to change, still valid
    assert not ContactRecord(attributes={"email": "new@example.se"}).is_update
    assert write_contacts([first]).count(b"<matchKeyType>memberNumber</matchKeyType>") == 1
