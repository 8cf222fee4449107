"""Contact import (spec A11/A13): ``<contacts><contact>`` with one child element per JSON attribute.

A record becomes the flat JSON body the contact API takes (``ContactRecord.body()``), so creating or updating
a contact from a file follows the rules of ``POST /api/v2/contacts`` and ``POST /api/v2/contacts/{id}``.

A record names the contact it changes in one of three ways: ``contactId`` (update that contact),
``matchKey`` + ``matchKeyType`` (update the contact that key identifies; an extension, for a till that knows
the customer's e-mail or member number but not the GUID), or neither (create the contact, or update the one
holding its key: Engage's contact import upserts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from io import BytesIO
from typing import Any

from lxml import etree
from pydantic import Field, field_validator, model_validator

from promoflow.wire.engage import WireModel
from promoflow.wire.xml._fields import NAMESPACE_PREFIX, Guid
from promoflow.wire.xml._parser import Codec, Layout, Record, RecordError, XmlSource, child_text, read_records
from promoflow.wire.xml._schema import Schema
from promoflow.wire.xml._writer import DocumentWriter, Node, model_nodes, text

CONTACTS_NAMESPACE = NAMESPACE_PREFIX + "contacts"

_RESERVED = frozenset({"contactId", "contactType", "preferences", "matchKey", "matchKeyType"})
# JSON attribute names are ASCII identifiers; XML names are wider, so the narrower rule decides for both ways.
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")
# Attributes that identify a contact, tried in this order for the key of an invalid record.
_KEY_ATTRIBUTES = (
    "contactId", "matchKey", "email", "memberNumber", "mobilePhone", "externalId", "socialSecurityNumber",
)  # fmt: skip
MATCH_KEY_TYPES = ("email", "mobilePhone", "socialSecurityNumber", "memberNumber", "externalId", "any")
"""What ``matchKeyType`` may name (any case): the keys a contact is looked up by (``any`` as in ``GET
…/contacts/id?any=``: the first of e-mail, personal id, phone number, custom key the value is valid as)."""
_MATCH_KEY_TYPES = {name.lower(): name for name in MATCH_KEY_TYPES}


class ContactPreferences(WireModel):
    accepts_email: bool | None = None
    accepts_sms: bool | None = None
    accepts_postal: bool | None = None


class ContactRecord(WireModel):
    """One ``<contact>``: update the contact ``contact_id`` names, or the one ``match_key`` (of
    ``match_key_type``) identifies; else create it (a create whose key exists updates that contact).

    ``attributes`` maps JSON attribute names to their text; an empty string clears the attribute.
    """

    contact_id: Guid | None = None
    match_key: str | None = Field(default=None, min_length=1, max_length=255)
    match_key_type: str | None = Field(default=None, min_length=1, max_length=100)
    contact_type: str | None = Field(default=None, min_length=1, max_length=100)
    attributes: dict[str, str] = Field(default_factory=dict)
    preferences: ContactPreferences | None = None

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in _RESERVED or not _ATTRIBUTE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot be an attribute name")
        return value

    @field_validator("match_key_type")
    @classmethod
    def _match_key_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        known = _MATCH_KEY_TYPES.get(value.lower())
        if known is None:
            raise ValueError(f"matchKeyType {value!r} is none of {', '.join(MATCH_KEY_TYPES)}")
        return known

    @model_validator(mode="after")
    def _one_way_to_name_the_contact(self) -> ContactRecord:
        if (self.match_key is None) != (self.match_key_type is None):
            raise ValueError("matchKey and matchKeyType go together")
        if self.match_key is not None and self.contact_id is not None:
            raise ValueError("a contact is named by contactId or by matchKey, not both")
        return self

    @property
    def is_update(self) -> bool:
        """Whether the record changes an existing contact only (by ``contactId`` or ``matchKey``)."""
        return self.contact_id is not None or self.match_key is not None

    def body(self) -> dict[str, Any]:
        """The flat JSON body of the contact API: attributes plus ``contactType`` and ``preferences``."""
        body: dict[str, Any] = dict(self.attributes)
        if self.contact_type is not None:
            body["contactType"] = self.contact_type
        if self.preferences is not None:
            body["preferences"] = self.preferences.model_dump(by_alias=True, exclude_none=True)
        return body


def _convert(section: str | None, element: etree._Element) -> ContactRecord:
    data: dict[str, Any] = {}
    values: dict[str, str] = {}
    for child in element:
        name = child.tag  # plain local names: the reader maps the accepted namespace away
        if name in values or name in data:
            raise ValueError(f"{name}: given twice")
        if name == "preferences":
            data[name] = {entry.tag: entry.text for entry in child}
        elif name in _RESERVED:
            data[name] = child.text
        elif len(child):
            raise ValueError(f"{name}: an attribute holds text only, not elements")
        else:
            values[name] = child.text or ""
    if not values and "contactId" not in data and "matchKey" not in data:
        raise ValueError("a contact needs at least one attribute, a contactId or a matchKey")
    data["attributes"] = values
    return ContactRecord.model_validate(data)


def _key(element: etree._Element) -> str | None:
    for name in _KEY_ATTRIBUTES:
        value = child_text(element, name)
        if value:
            return value
    return None


CONTACTS = Codec(
    layout=Layout(root="contacts", sections={None: "contact"}, namespaces=(None, CONTACTS_NAMESPACE)),
    schema=Schema("contacts"),
    convert=_convert,
    key=_key,
)


def read_contacts(source: XmlSource) -> Iterator[Record[ContactRecord] | RecordError]:
    """Stream a contact file: a ``Record`` per valid ``<contact>``, a ``RecordError`` per invalid one."""
    return read_records(source, CONTACTS)


def contact_nodes(contact: ContactRecord) -> list[Node]:
    nodes: list[Node] = []
    if contact.contact_id is not None:
        nodes.append(("contactId", None, contact.contact_id))
    if contact.match_key is not None and contact.match_key_type is not None:
        nodes.append(("matchKey", None, text(contact.match_key)))
        nodes.append(("matchKeyType", None, text(contact.match_key_type)))
    if contact.contact_type is not None:
        nodes.append(("contactType", None, text(contact.contact_type)))
    nodes.extend((name, None, text(value)) for name, value in contact.attributes.items())
    if contact.preferences is not None:
        nodes.append(("preferences", None, model_nodes(contact.preferences, {})))
    return nodes


class ContactWriter(DocumentWriter):
    """Writes ``<contacts>`` one ``<contact>`` at a time."""

    root = "contacts"

    def write(self, contact: ContactRecord) -> None:
        self._write(("contact", None, contact_nodes(contact)))


def write_contacts(contacts: Iterable[ContactRecord]) -> bytes:
    """A complete contact document as bytes."""
    out = BytesIO()
    with ContactWriter(out) as writer:
        for contact in contacts:
            writer.write(contact)
    return out.getvalue()
