"""Contact files (A11/A13): each ``<contact>`` creates or updates a contact through ``ContactService``.

A record names its contact in one of three ways:

- ``<contactId>``: that contact is updated (partial, as ``POST /api/v2/contacts/{id}``); unknown → ``notFound``.
- ``<matchKey>`` + ``<matchKeyType>`` (extension): the contact that key identifies is updated; no such contact →
  ``notFound``, and nothing is created. A till that knows a customer's e-mail or member number but not the GUID
  (identified while offline) sends its changes this way.
- neither: the contact is created, or — when a contact with the same key exists — that contact is updated with
  the record's values. This is an upsert, as Engage's contact import is (a contact file sends changes), and
  unlike ``POST /api/v2/contacts``, which answers a known key with the existing contact unchanged (A11).

Either way the result carries the contact's GUID in ``contactId``, so an integrator never has to look up a
contact it created or changed by file.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ....wire.errors import ErrorCode
from ....wire.xml import ContactRecord, Record, Verdict
from ...contact.errors import ContactNotFoundError
from ...contact.service import ContactService
from ...tenant.service import TenantContext
from ..results import Outcome
from ._common import each_in_savepoint


def _key(value: ContactRecord) -> str | None:
    if value.contact_id:
        return value.contact_id
    if value.match_key:
        return value.match_key
    for name in ("email", "memberNumber", "mobilePhone", "externalId", "socialSecurityNumber"):
        if value.attributes.get(name):
            return value.attributes[name]
    return None


class ContactApplier:
    def __init__(self, tenant: TenantContext, imp: Any, now: datetime) -> None:
        self.service = ContactService(tenant, now)

    async def apply(self, conn: AsyncConnection, records: list[Record[ContactRecord]]) -> list[Outcome]:
        return await each_in_savepoint(conn, records, _key, self._one)

    async def _by_match_key(self, conn: AsyncConnection, value: ContactRecord) -> uuid.UUID | None:
        assert value.match_key is not None and value.match_key_type is not None
        if value.match_key_type == "any":
            try:
                found = await self.service.lookup(
                    conn, {"any": value.match_key, "contactType": value.contact_type}
                )
            except ContactNotFoundError:
                return None
            return uuid.UUID(found)
        return await self.service.find_by_key(conn, value.match_key_type, value.match_key, value.contact_type)

    async def _one(self, conn: AsyncConnection, rec: Record[ContactRecord]) -> Outcome:
        value = rec.value
        body = value.body()
        contact_id = value.contact_id
        if value.match_key is not None:
            found = await self._by_match_key(conn, value)
            if found is None:
                reason = f"{ErrorCode.CONTACT_NOT_FOUND.value}: no contact has {value.match_key_type} {value.match_key!r}"
                return Outcome(rec.index, Verdict.NOT_FOUND, rec.line, _key(value), reason)
            contact_id = str(found)
        if contact_id:
            out = await self.service.update(conn, contact_id, body)
            return Outcome(
                rec.index, Verdict.APPLIED, rec.line, _key(value), "updated", {"contactId": out["id"]}
            )
        out, created = await self.service.create(conn, body, source="file")
        if not created:
            changes = {k: v for k, v in body.items() if k != "contactType"}
            out = await self.service.update(conn, out["id"], changes)
        reason = "created" if created else "updated"
        return Outcome(rec.index, Verdict.APPLIED, rec.line, _key(value), reason, {"contactId": out["id"]})
