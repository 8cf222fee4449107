"""Contacts (A11): create, read, partial update, look-up by key, count."""

from __future__ import annotations

import json
import math
import re
import unicodedata
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ...kit.timeutil import iso
from ..audit import diff, record
from ..dialect import insert_ignore
from ..exceptions import InvalidPayloadError, PromoflowError
from ..hooks import fire_contact_changed
from ..models import contact
from ..receipt.errors import InvalidMatchKeyTypeError
from ..tenant.service import CONTACT_TYPES, TenantContext
from .errors import (
    ContactKeyConflictError,
    ContactNotFoundError,
    InvalidAttributeValueError,
    InvalidContactIdError,
    InvalidContactTypeError,
    InvalidEmailAddressError,
    InvalidPhoneNumberError,
    InvalidSearchQueryError,
    InvalidSocialSecurityNumberError,
    MissingKeyAttributeError,
    MultipleMatchesError,
)
from .numbers import next_member_number

KNOWN_ATTRIBUTES = frozenset(
    {
        "firstName", "lastName", "email", "mobilePhone", "socialSecurityNumber", "externalId", "memberNumber",
        "birthDay", "gender", "street", "careOf", "zipCode", "city", "county", "countryCode", "language",
        "companyName", "phoneNumber", "cardId", "storeExternalId", "memberStatus", "registrationDate",
    }
)  # fmt: skip
_NUMBER_TRIES = 5
_NOT_ATTRIBUTES = frozenset({"contactType", "preferences"})
PREFERENCES = ("acceptsEmail", "acceptsSms", "acceptsPostal")
_LOOKUP_COLUMNS = {
    "email": "email",
    "mobilePhone": "mobile_phone",
    "socialSecurityNumber": "ssn",
    "memberNumber": "member_number",
    "externalId": "external_id",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A national number (6-15 digits), or an international one in E.164's shape: a country code never starts with 0,
# so "00000001" (a member number as the server hands them out; "00" is read as "+") is not a phone number and
# `any` goes on to the custom key.
_PHONE = re.compile(r"^(?:\+[1-9][0-9]{6,14}|[0-9]{6,15})$")


def normalize_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value) or len(value) > 255:
        raise InvalidEmailAddressError(f"not a valid e-mail address: {value!r}")
    return value


def normalize_phone(value: str) -> str:
    text = re.sub(r"[\s\-().]", "", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PHONE.match(text):
        raise InvalidPhoneNumberError(f"not a valid phone number: {value!r}")
    return text


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def normalize_ssn(value: str) -> str:
    """Swedish/Finnish-style personal ids: 10 or 12 digits (separators allowed), Luhn-checked like Engage."""
    text = re.sub(r"[\s\-+]", "", value)
    if not text.isdigit() or len(text) not in (10, 12) or not _luhn_ok(text[-10:]):
        raise InvalidSocialSecurityNumberError(f"not a valid social security number: {value!r}")
    return text


def normalize_key(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 64:
        raise InvalidSearchQueryError("a custom key is 1 to 64 characters")
    return text


_NORMALIZERS = {
    "email": normalize_email,
    "mobilePhone": normalize_phone,
    "socialSecurityNumber": normalize_ssn,
    "memberNumber": normalize_key,
    "externalId": normalize_key,
}


def contact_type_of(value: Any) -> str:
    if value is None or value == "":
        return "Member"
    if isinstance(value, str):
        for t in CONTACT_TYPES:
            if t.lower() == value.strip().lower():
                return t
    raise InvalidContactTypeError(f"unknown contact type {value!r}; use one of {', '.join(CONTACT_TYPES)}")


_KEY_NAMES = {
    **{n.lower(): n for n in _LOOKUP_COLUMNS},
    "memberNumberWithCardNumberAsFallback".lower(): "memberNumber",
}
_MANY_KEYS = 1000
"""Keys per statement of `find_many_by_key`."""


def _key_lookup(key_type: str, value: str, contact_type: str | None) -> tuple[Any, Any, str | None]:
    """Where a match key is looked up: (the contact column, the normalised value, the contact type); for a
    contactId, (None, the id as a UUID, None). Raises the key's 400 for an unknown type or a malformed id."""
    kt = key_type.strip().lower()
    if kt == "contactid":
        guid = parse_guid(value)
        if guid is None:
            raise InvalidContactIdError(f"contact id {value!r} is not a GUID")
        return None, guid, None
    attr = _KEY_NAMES.get(kt)
    if attr is None:
        raise InvalidMatchKeyTypeError(f"unknown matchKeyType {key_type!r}")
    norm = _NORMALIZERS[attr](value)
    ctype = contact_type_of(contact_type) if contact_type else None
    return getattr(contact.c, _LOOKUP_COLUMNS[attr]), norm, ctype


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_attributes(body: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, value in body.items():
        if name not in KNOWN_ATTRIBUTES:
            continue  # unknown keys are ignored, as Engage does
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidAttributeValueError(f"attribute {name!r} must be a string, number or boolean")
        if isinstance(value, float) and not math.isfinite(value):
            # Python's JSON reader takes NaN and Infinity: not JSON, and no database column keeps them.
            raise InvalidAttributeValueError(f"attribute {name!r} must be a finite number")
        if isinstance(value, str) and "\x00" in value:
            raise InvalidAttributeValueError(f"attribute {name!r} contains a NUL character")
        if isinstance(value, str) and not value.isascii() and not _unicode(value):
            # A lone surrogate ("\ud800" in JSON) is stored by SQLite and then no answer can be written.
            if name == "email":
                raise InvalidEmailAddressError(f"not a valid e-mail address: {value!r}")
            raise InvalidAttributeValueError(
                f"attribute {name!r} is not valid Unicode text (a lone surrogate)"
            )
        if isinstance(value, str):
            value = value.strip()
        attrs[name] = value
    for name, norm in _NORMALIZERS.items():
        v = attrs.get(name)
        if v not in (None, ""):
            attrs[name] = norm(str(v))
    return attrs


def field_problems(body: dict[str, Any]) -> dict[str, PromoflowError]:
    """Each attribute of a body that would be refused, checked on its own (a contact file validates field by
    field, Part B §9.3: the bad fields are skipped, the others applied)."""
    problems: dict[str, PromoflowError] = {}
    for name, value in body.items():
        try:
            _clean_attributes({name: value})
        except PromoflowError as exc:
            problems[name] = exc
    return problems


WARNINGS_HEADER = "Promoflow-Warnings"
_MAX_NAMED = 20


def attribute_warnings(body: dict[str, Any]) -> list[str]:
    """What a create or update body carried that is not stored: unknown attribute names. Engage ignores them
    without an error (Part B §6.4), and so does promoflow, but it says so (v3 body `warnings`, both versions the
    `Promoflow-Warnings` header) instead of dropping a misspelt attribute in silence."""
    unknown = [name for name in body if name not in KNOWN_ATTRIBUTES and name not in _NOT_ATTRIBUTES]
    if not unknown:
        return []
    named = ", ".join(repr(n[:64]) for n in unknown[:_MAX_NAMED])
    more = f" and {len(unknown) - _MAX_NAMED} more" if len(unknown) > _MAX_NAMED else ""
    return [f"UnknownAttribute: not a contact attribute, ignored: {named}{more}"]


def warnings_header(warnings: list[str]) -> str:
    """The header's value: the warnings as a JSON array in ASCII (a name may hold any character)."""
    return json.dumps(warnings, ensure_ascii=True)


def _preferences(value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    prefs = dict(base or {})
    if value is None:
        return prefs
    if not isinstance(value, dict):
        raise InvalidPayloadError("preferences must be an object")
    for name in PREFERENCES:
        if name in value:
            v = value[name]
            if v is not None and not isinstance(v, bool):
                raise InvalidPayloadError(f"preferences.{name} must be true, false or null")
            prefs[name] = v
    return prefs


NAME_KEY_LENGTH = 255


def fold_name(text: str) -> str:
    """A name as the admin UI's name search compares it: case-folded, accents removed ("Sjö" → "sjo"), runs of
    white space as one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def name_keys(attrs: dict[str, Any]) -> dict[str, str | None]:
    """The name search's two indexed columns: "first last" and "last first", folded (``fold_name``), so a
    prefix of either is one index range (migration 0019)."""
    first = fold_name(str(attrs.get("firstName") or ""))
    last = fold_name(str(attrs.get("lastName") or ""))
    if not first and not last:
        return {"name_key": None, "name_key_rev": None}
    return {
        "name_key": f"{first} {last}".strip()[:NAME_KEY_LENGTH],
        "name_key_rev": f"{last} {first}".strip()[:NAME_KEY_LENGTH],
    }


def changed_columns(columns: dict[str, Any], row: Any) -> dict[str, Any]:
    """The derived ``columns`` whose value differs from the stored ``row``'s: an UPDATE sets only those, as SQLite
    rewrites the entries of every index whose column it sets, equal or not (each derived column has one)."""
    return {k: v for k, v in columns.items() if getattr(row, k) != v}


def _columns(ctx: TenantContext, contact_type: str, attrs: dict[str, Any]) -> dict[str, Any]:
    def col(name: str) -> str | None:
        v = attrs.get(name)
        return None if v in (None, "") else str(v)

    key_attr = ctx.key_attribute(contact_type)
    return {
        "key_value": col(key_attr),
        "email": col("email"),
        "mobile_phone": col("mobilePhone"),
        "ssn": col("socialSecurityNumber"),
        "member_number": col("memberNumber"),
        "external_id": col("externalId"),
        **name_keys(attrs),
    }


def holders(column: Any, *selected: Any, typed: bool, limit: int) -> Select[Any]:
    """The tenant's contacts — of one contact type when ``typed`` — that hold a value in ``column``, first created
    first, as the routed look-ups order them (`ContactService._by_column`, `find_by_key`): the quick paths'
    compiled statement, with the parameters ``t`` (the tenant), ``key`` and, when typed, ``ct``."""
    c = contact.c
    return (
        select(*selected)
        .where(
            c.tenant_id == bindparam("t", type_=c.tenant_id.type),
            column == bindparam("key", type_=column.type),
            *([c.contact_type == bindparam("ct", type_=String())] if typed else []),
        )
        .order_by(c.created_at)
        .limit(limit)
    )


def any_key(ctx: TenantContext, raw: str) -> tuple[str, str]:
    """Engage's `any` rule: the attribute a value is read as — the first of email, socialSecurityNumber and
    mobilePhone it validates as, else the tenant's custom key — and the value normalised. The first that validates
    decides, even when no contact holds it (`GET /contacts/id?any=`, a receipt's or a contact file's `any`)."""
    for attr in ("email", "socialSecurityNumber", "mobilePhone"):
        try:
            return attr, _NORMALIZERS[attr](raw)
        except PromoflowError:
            continue
    custom = ctx.custom_key if ctx.custom_key in ("memberNumber", "externalId") else "memberNumber"
    return custom, normalize_key(raw)


def lookup_question(ctx: TenantContext, params: dict[str, str | None]) -> tuple[str, str, str | None]:
    """`GET /contacts/id`'s question (Part B §6.2): the column, the normalised value and the contact type (None:
    any) of the one key given; raises what the look-up answers to a question it refuses. The contact is the one
    that holds the value in the column (`ContactService.lookup`; the quick path asks the same, `quick.lookup`)."""
    contact_type = contact_type_of(params["contactType"]) if params.get("contactType") else None
    given = {k: v for k, v in params.items() if k != "contactType" and v not in (None, "")}
    if len(given) != 1:
        raise InvalidSearchQueryError(
            "give exactly one of email, mobilePhone, socialSecurityNumber, customKey or any"
        )
    (name, raw), = given.items()  # fmt: skip
    assert raw is not None
    custom_col = _LOOKUP_COLUMNS.get(ctx.custom_key, "member_number")
    if name == "any":
        attr, value = any_key(ctx, raw)
        column = _LOOKUP_COLUMNS[attr]
    elif name == "customKey":
        column, value = custom_col, normalize_key(raw)
    elif name in ("email", "mobilePhone", "socialSecurityNumber"):
        column, value = _LOOKUP_COLUMNS[name], _NORMALIZERS[name](raw)
    else:
        raise InvalidSearchQueryError(f"unknown search parameter {name!r}")
    return column, value, contact_type


def contact_out(row: Any, tz: Any) -> dict[str, Any]:
    attrs = dict(row.attributes)
    return {
        "id": str(row.id),
        "contactType": row.contact_type,
        "attributes": attrs,
        "preferences": dict(row.preferences),
        "meta": {
            "contactType": row.contact_type,
            "createdOn": iso(row.created_at, tz),
            "modifiedOn": iso(row.updated_at, tz),
            "source": row.source,
            "storeExternalId": row.store_external_id,
            "isApproved": bool(row.approved),
        },
        "consents": [],
    }


def audit_view(contact_type: str, attrs: dict[str, Any], prefs: dict[str, Any]) -> dict[str, Any]:
    """A contact as the audit log records it: its attributes, and each preference as ``preferences.<name>``."""
    return {"contactType": contact_type, **attrs, **{f"preferences.{k}": v for k, v in prefs.items()}}


def created_view(
    contact_type: str, attrs: dict[str, Any], prefs: dict[str, Any], source: str | None, store: str | None
) -> dict[str, Any]:
    """A new contact as its ``contact.create`` entry records it (``after``)."""
    return {**audit_view(contact_type, attrs, prefs), "source": source, "storeExternalId": store}


def parse_contact_id(value: str) -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise InvalidContactIdError(f"contact id {value!r} is not a GUID")
    return guid


class ContactService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    async def _row(self, conn: AsyncConnection, contact_id: uuid.UUID, *, for_update: bool = False) -> Any:
        """The tenant's contact ``contact_id``; with ``for_update``, locked until the transaction ends (PostgreSQL;
        SQLite's write transaction already excludes other writers), so a read-merge-write keeps every concurrent
        change (the quick path's versioned writes wait for the lock and read again)."""
        query = select(contact).where(contact.c.id == contact_id, contact.c.tenant_id == self.ctx.tenant_id)
        row = (await conn.execute(query.with_for_update() if for_update else query)).first()
        if row is None:
            raise ContactNotFoundError(f"contact {contact_id} not found")
        return row

    async def get(self, conn: AsyncConnection, contact_id: str) -> dict[str, Any]:
        return contact_out(await self._row(conn, parse_contact_id(contact_id)), self.ctx.tz)

    async def exists(self, conn: AsyncConnection, contact_id: uuid.UUID) -> bool:
        found = await conn.scalar(
            select(contact.c.id).where(contact.c.id == contact_id, contact.c.tenant_id == self.ctx.tenant_id)
        )
        return found is not None

    async def count(self, conn: AsyncConnection, contact_type: str | None = None) -> int:
        q = select(func.count()).select_from(contact).where(contact.c.tenant_id == self.ctx.tenant_id)
        if contact_type is not None:
            q = q.where(contact.c.contact_type == contact_type_of(contact_type))
        return int(await conn.scalar(q) or 0)

    async def create(
        self,
        conn: AsyncConnection,
        body: dict[str, Any],
        *,
        source: str | None = None,
        store_external_id: str | None = None,
        approved: bool = True,
        contact_id: uuid.UUID | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create a contact; when its key already exists, the existing contact, unchanged (created=False)."""
        contact_type = contact_type_of(body.get("contactType"))
        attrs = _clean_attributes(body)
        prefs = _preferences(body.get("preferences"))
        key_attr = self.ctx.key_attribute(contact_type)
        custom = self.ctx.custom_key
        if attrs.get(key_attr) in (None, "") and key_attr != custom:
            raise MissingKeyAttributeError(f"a {contact_type} needs its key attribute {key_attr!r}")
        if attrs.get(key_attr) not in (None, ""):
            existing = await self._by_column(conn, _LOOKUP_COLUMNS.get(key_attr, "key_value"), attrs[key_attr],
                                             contact_type, key=True)  # fmt: skip
            if existing is not None:
                return contact_out(existing, self.ctx.tz), False
        # A generated member number that a contact already holds (given explicitly by a client) is skipped.
        generated = custom == "memberNumber" and attrs.get("memberNumber") in (None, "")
        new_id = contact_id or uuid.uuid4()
        for _ in range(_NUMBER_TRIES):
            if generated:
                attrs["memberNumber"] = await next_member_number(conn, self.ctx.tenant_id)
            values = {
                "id": new_id,
                "tenant_id": self.ctx.tenant_id,
                "contact_type": contact_type,
                "attributes": attrs,
                "preferences": prefs,
                "source": source,
                "store_external_id": store_external_id,
                "approved": approved,
                "created_at": self.now,
                "updated_at": self.now,
                **_columns(self.ctx, contact_type, attrs),
            }
            inserted = await conn.scalar(insert_ignore(conn, contact, values).returning(contact.c.id))
            if inserted is not None:
                break
            # Lost a race with a create of the same key, or a caller-given memberNumber/id is taken.
            if values["key_value"] is not None and not (generated and key_attr == "memberNumber"):
                existing = await self._by_column(
                    conn, "key_value", values["key_value"], contact_type, key=True
                )
                if existing is not None:
                    return contact_out(existing, self.ctx.tz), False
            if not generated or not await self._member_number_taken(conn, values["member_number"]):
                raise ContactKeyConflictError("another contact already holds this member number or id")
        else:
            raise ContactKeyConflictError("no free member number was found; give one explicitly")
        row = await self._row(conn, new_id)
        after = created_view(contact_type, attrs, prefs, source, store_external_id)
        await record(conn, self.ctx.tenant_id, self.ctx.actor, "contact.create", "contact", new_id, after=after,
                     at=self.now, contact_id=new_id)  # fmt: skip
        await fire_contact_changed(conn, self.ctx, new_id, self.now)
        return contact_out(row, self.ctx.tz), True

    async def update(self, conn: AsyncConnection, contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = await self._row(conn, parse_contact_id(contact_id), for_update=True)
        attrs = dict(row.attributes)
        changed = _clean_attributes(changes)
        for name, value in changed.items():
            if value is None or value == "":
                attrs.pop(name, None)  # present-but-empty clears, as Engage documents
            else:
                attrs[name] = value
        key_attr = self.ctx.key_attribute(row.contact_type)
        if key_attr in changed and attrs.get(key_attr) in (None, "") and key_attr != self.ctx.custom_key:
            raise MissingKeyAttributeError(f"the key attribute {key_attr!r} cannot be cleared")
        prefs = _preferences(changes.get("preferences"), row.preferences)
        cols = _columns(self.ctx, row.contact_type, attrs)
        for column, attr in (("key_value", key_attr), ("member_number", "memberNumber")):
            value = cols[column]
            if attr in changed and value is not None:
                clash = await conn.scalar(
                    select(contact.c.id).where(
                        contact.c.tenant_id == self.ctx.tenant_id,
                        getattr(contact.c, column) == value,
                        contact.c.id != row.id,
                        *([contact.c.contact_type == row.contact_type] if column == "key_value" else []),
                    )
                )
                if clash is not None:
                    raise ContactKeyConflictError(f"another contact already has {attr} {value!r}")
        try:
            await conn.execute(
                update(contact)
                .where(contact.c.id == row.id, contact.c.tenant_id == self.ctx.tenant_id)
                .values(
                    attributes=attrs, preferences=prefs, updated_at=self.now, **changed_columns(cols, row)
                )
            )
        except IntegrityError as exc:
            # Another transaction took the key between our check and our write (concurrent updates on
            # PostgreSQL): the unique constraint decides, and the loser gets the sequential caller's 409.
            if "key_value" not in str(exc.orig) and "member_number" not in str(exc.orig):
                raise
            raise ContactKeyConflictError("another contact already has this key") from exc
        before, after = diff(audit_view(row.contact_type, dict(row.attributes), dict(row.preferences)),
                                audit_view(row.contact_type, attrs, prefs))  # fmt: skip
        if before or after:
            await record(conn, self.ctx.tenant_id, self.ctx.actor, "contact.update", "contact", row.id, before,
                         after, at=self.now, contact_id=row.id)  # fmt: skip
        if any(name in changed for name in _LOOKUP_COLUMNS):
            await fire_contact_changed(conn, self.ctx, row.id, self.now)
        return contact_out(await self._row(conn, row.id), self.ctx.tz)

    async def _member_number_taken(self, conn: AsyncConnection, number: str) -> bool:
        found = await conn.scalar(
            select(contact.c.id).where(
                contact.c.tenant_id == self.ctx.tenant_id, contact.c.member_number == number
            )
        )
        return found is not None

    async def _by_column(
        self, conn: AsyncConnection, column: str, value: str, contact_type: str | None, *, key: bool = False
    ) -> Any:
        col = getattr(contact.c, column)
        conds = [contact.c.tenant_id == self.ctx.tenant_id, col == value]
        if contact_type is not None:
            conds.append(contact.c.contact_type == contact_type)
        rows = (
            await conn.execute(select(contact).where(and_(*conds)).order_by(contact.c.created_at).limit(2))
        ).all()
        if not rows:
            return None
        if len(rows) > 1 and not key:
            raise MultipleMatchesError("more than one contact matches")
        return rows[0]

    async def lookup(self, conn: AsyncConnection, params: dict[str, str | None]) -> str:
        """`GET /contacts/id`: the one contact a key names (Part B §6.2)."""
        column, value, contact_type = lookup_question(self.ctx, params)
        row = await self._by_column(conn, column, value, contact_type)
        if row is None:
            raise ContactNotFoundError("no contact matches")
        return str(row.id)

    async def find_by_key(
        self, conn: AsyncConnection, key_type: str, value: str, contact_type: str | None = None
    ) -> uuid.UUID | None:
        """Resolve a receipt/file match key (contactId, email, mobilePhone, memberNumber, externalId,
        socialSecurityNumber; case-insensitive) to a contact id, or None when no contact matches yet."""
        column, norm, ctype = _key_lookup(key_type, value, contact_type)
        if column is None:
            return norm if await self.exists(conn, norm) else None
        # The first contact by creation that holds the key (the id only: the row's JSON is not needed here).
        return await conn.scalar(
            select(contact.c.id)
            .where(*self._holding(ctype), column == norm)
            .order_by(contact.c.created_at)
            .limit(1)
        )

    async def find_many_by_key(
        self, conn: AsyncConnection, keys: Iterable[tuple[str, str, str | None]]
    ) -> dict[tuple[str, str, str | None], uuid.UUID | None]:
        """`find_by_key` for many ``(key_type, value, contact_type)`` at once (a file's batch of receipts): one
        statement per column and contact type instead of one per key. A key that `find_by_key` refuses is left
        out (the caller's own `find_by_key` raises its error)."""
        wanted: dict[tuple[Any, str | None], dict[Any, list[tuple[str, str, str | None]]]] = {}
        for key in keys:
            try:
                column, norm, ctype = _key_lookup(*key)
            except PromoflowError:
                continue
            wanted.setdefault((column, ctype), {}).setdefault(norm, []).append(key)
        found: dict[tuple[str, str, str | None], uuid.UUID | None] = {}
        for (column, ctype), by_value in wanted.items():
            values = list(by_value)
            first: dict[Any, uuid.UUID] = {}
            for at in range(0, len(values), _MANY_KEYS):
                chunk = values[at : at + _MANY_KEYS]
                if column is None:  # contact ids: the ones of this tenant
                    rows = await conn.execute(
                        select(contact.c.id, contact.c.id).where(
                            *self._holding(None), contact.c.id.in_(chunk)
                        )
                    )
                else:
                    rows = await conn.execute(
                        select(contact.c.id, column)
                        .where(*self._holding(ctype), column.in_(chunk))
                        .order_by(contact.c.created_at)
                    )
                for contact_id, value in rows:
                    first.setdefault(value, contact_id)  # the first by creation, as `find_by_key` takes
            for norm, asked in by_value.items():
                for key in asked:
                    found[key] = first.get(norm)
        return found

    def _holding(self, contact_type: str | None) -> list[Any]:
        """The tenant's contacts (of ``contact_type``, when given)."""
        conds = [contact.c.tenant_id == self.ctx.tenant_id]
        if contact_type is not None:
            conds.append(contact.c.contact_type == contact_type)
        return conds
