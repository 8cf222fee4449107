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

Fields are validated one by one, as Engage's contact import does (Part B §9.3): a field the API would refuse (a
phone number "12") is skipped and named in the line's reason, the others are applied. What leaves the record no
contact — a create without its key attribute, because it was missing or itself refused — makes the line
``invalid``, with nothing applied.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ....wire.errors import ErrorCode
from ....wire.xml import ContactRecord, Record, Verdict
from ...contact.errors import ContactNotFoundError
from ...contact.service import ContactService, field_problems
from ...exceptions import PromoflowError
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
        skipped = field_problems(body)
        for name in skipped:
            del body[name]
        said = "; ".join(f"{name} ({exc.code.value}: {exc.message})" for name, exc in skipped.items())
        try:
            outcome = await self._apply(conn, rec, body)
        except PromoflowError as exc:
            if not skipped:
                raise
            # Without the skipped fields there is no contact to make (its key was among them): say both.
            raise type(exc)(f"{exc.message}; refused {said}") from exc
        if skipped and outcome.verdict is Verdict.APPLIED:
            outcome = replace(outcome, reason=f"{outcome.reason}; skipped {said}")
        return outcome

    async def _apply(
        self, conn: AsyncConnection, rec: Record[ContactRecord], body: dict[str, Any]
    ) -> Outcome:
        value = rec.value
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
