"""Contact files (A11/A13): each ``<contact>`` creates or updates a contact through ``ContactService``.

With ``<contactId>`` the contact is updated (partial, as ``POST /api/v2/contacts/{id}``). Without it the contact
is created, or — when a contact with the same key exists — that contact is updated with the record's values (a
contact file sends changes; Engage's import works the same way). Either way the result carries the contact's
GUID in ``contactId``, so an integrator never has to look up a contact it created by file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ....wire.xml import ContactRecord, Record, Verdict
from ...contact.service import ContactService
from ...tenant.service import TenantContext
from ..results import Outcome
from ._common import each_in_savepoint


def _key(value: ContactRecord) -> str | None:
    if value.contact_id:
        return value.contact_id
    for name in ("email", "memberNumber", "mobilePhone", "externalId", "socialSecurityNumber"):
        if value.attributes.get(name):
            return value.attributes[name]
    return None


class ContactApplier:
    def __init__(self, tenant: TenantContext, imp: Any, now: datetime) -> None:
        self.service = ContactService(tenant, now)

    async def apply(self, conn: AsyncConnection, records: list[Record[ContactRecord]]) -> list[Outcome]:
        return await each_in_savepoint(conn, records, _key, self._one)

    async def _one(self, conn: AsyncConnection, rec: Record[ContactRecord]) -> Outcome:
        value = rec.value
        body = value.body()
        if value.contact_id:
            out = await self.service.update(conn, value.contact_id, body)
            return Outcome(
                rec.index, Verdict.APPLIED, rec.line, _key(value), "updated", {"contactId": out["id"]}
            )
        out, created = await self.service.create(conn, body, source="file")
        if not created:
            changes = {k: v for k, v in body.items() if k != "contactType"}
            out = await self.service.update(conn, out["id"], changes)
        reason = "created" if created else "updated"
        return Outcome(rec.index, Verdict.APPLIED, rec.line, _key(value), reason, {"contactId": out["id"]})
