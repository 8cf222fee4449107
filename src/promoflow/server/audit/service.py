"""The audit log: who changed what, when, from what to what. Append-only; written in the same transaction as the
change it records, so a change that rolls back leaves no entry (and an entry never outlives its change).

Recording (the one call every change path makes)::

    from promoflow.server import audit

    await audit.record(conn, tenant_id, actor, "promotion.update", "promotion", promotion_id,
                       before={"name": "Old"}, after={"name": "New"}, at=now)

- ``conn``: the unit of work's `AsyncConnection` (never commits; the edge does).
- ``actor``: an `Actor` — usually ``ctx.actor`` (`TenantContext` carries it from the edge: the API key for API
  calls, the signed-in user in the admin UI, the file for imports, ``Actor.cli()`` for `promoflow` commands).
- ``action``: ``<object type>.<verb>`` (below); ``object_type``/``object_id``: what changed.
- ``before``/``after``: JSON-able dicts; for an edit only the fields that changed (`diff` computes them), for a
  creation ``after`` only, for a deletion ``before`` only. Dates, times, UUIDs and Decimals are turned into text.
- ``contact_id``/``promotion_id``: the contact and promotion the change concerns (an assignment concerns both),
  so the contact card and the promotion page can show their own slice ("History").
- ``summary=True`` for an entry that stands for many changes (a file import); an actor whose changes are not
  itemised (``Actor.itemised`` is False: a file) records only such entries.

What is recorded (action — where):
    promotion.create / update / activate / deactivate / delete    promotion/service.py (API, admin UI)
    assignment.create                                              promotion/assignment.py (API, admin UI)
    assignment.bulk  (one entry per run: API job, pasted keys, segment)  promotion/bulk.py
    redemption.reactivate                                          promotion/assignment.py
    contact.create / update                                        contact/service.py (API)
    import.apply  (one entry per file import that applied records)  transfer/importer.py
    tenant.create, settings.update, api_key.create / rotate        tenant/service.py (CLI, admin UI)
    ftp.rotate                                                     transfer/accounts.py
    user.create / role / disable / enable / reset / remove         admin/users.py (CLI, admin UI)
    user.invite / withdraw (admin UI), user.join (the person)      admin/invitations.py

What is NOT recorded: redemptions and receipts (checkout traffic: millions a day; they are in the redemption
ledger and the receipts), promotions shown to a customer (the ledger), the per-line effects of a file import (one
``import.apply`` entry per import; the lines are in its line results), reads, sign-ins (``admin_login_attempt``).
There is no update or delete path: nothing but the tenant's deletion removes an entry.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import and_, insert, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ..models import audit_event
from ..models.audit import NOT_A_CONTACTS_OWN
from .actor import Actor, ActorKind

_SCALARS = frozenset({str, int, float, bool, type(None)})


def plain(value: Any) -> Any:
    """A JSON-able copy: dates and times as ISO text, UUIDs and Decimals as text, enums as their value."""
    kind = type(value)  # the common cases first (every contact write's entry goes through here)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only what differs: (the old values, the new values) of the keys whose value changed (a key missing on one
    side counts as None there)."""
    old, new = plain(dict(before)), plain(dict(after))
    keys = [k for k in {**old, **new} if old.get(k) != new.get(k)]
    return {k: old.get(k) for k in keys}, {k: new.get(k) for k in keys}


def entry_values(
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    contact_id: uuid.UUID | None = None,
    promotion_id: uuid.UUID | None = None,
    summary: bool = False,
) -> dict[str, Any] | None:
    """The row `record` appends (column name → value), or None when the actor's changes are not itemised. For the
    paths that write without SQLAlchemy's connection (the contact quick paths), so they write the same row."""
    if not actor.itemised and not summary:
        return None
    if object_type == "contact" and str(contact_id) != str(object_id):
        # The object index leaves a contact's own entries to the contact index (migration 0026).
        raise ValueError("an entry about a contact names it as its contact too")
    return {
        "tenant_id": tenant_id,
        "at": at or datetime.now(UTC),
        "actor_kind": actor.kind.value,
        "actor": actor.name[:255],
        "actor_ref": actor.ref[:64] if actor.ref else None,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id)[:64],
        "contact_id": contact_id,
        "promotion_id": promotion_id,
        "before": plain(dict(before)) if before is not None else None,
        "after": plain(dict(after)) if after is not None else None,
    }


async def record(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    contact_id: uuid.UUID | None = None,
    promotion_id: uuid.UUID | None = None,
    summary: bool = False,
) -> None:
    """Append one entry, in the caller's transaction (see the module docstring)."""
    values = entry_values(tenant_id, actor, action, object_type, object_id, before, after, at=at,
                          contact_id=contact_id, promotion_id=promotion_id, summary=summary)  # fmt: skip
    if values is not None:
        await conn.execute(insert(audit_event).values(values))


# ============================================================================================ reading


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: Actor
    action: str
    object_type: str
    object_id: str
    contact_id: uuid.UUID | None
    promotion_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, r: Any) -> AuditEntry:
        return cls(r.id, r.at, Actor(ActorKind(r.actor_kind), r.actor, r.actor_ref), r.action, r.object_type,
                   r.object_id, r.contact_id, r.promotion_id, r.before, r.after)  # fmt: skip

    def fields(self) -> list[tuple[str, Any, Any]]:
        """(field, before, after) for every field either side names, in the order they were written."""
        b, a = self.before or {}, self.after or {}
        return [(k, b.get(k), a.get(k)) for k in {**b, **a}]

    def context(self) -> list[str]:
        """The fields an edit's ``before`` names only to say what was changed (a user's e-mail, a key's name):
        its ``after`` leaves them out, so they are context, not a value that was erased."""
        if self.before is None or self.after is None:
            return []
        return [k for k in self.before if k not in self.after]


@dataclass(frozen=True)
class AuditFilter:
    """Narrows a listing; every field optional. ``actor`` is matched exactly (an e-mail, a key's name, a file
    name); ``since``/``until`` are instants (the UI turns the tenant's local days into them)."""

    actor: str = ""
    actor_kind: ActorKind | None = None
    object_type: str = ""
    object_id: str = ""
    action: str = ""
    contact_id: uuid.UUID | None = None
    promotion_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(entry: AuditEntry) -> str:
    raw = f"{entry.at.astimezone(UTC).isoformat()}|{entry.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[datetime, int] | None:
    if not text:
        return None
    try:
        stamp, ident = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("|")
        at = datetime.fromisoformat(stamp)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)), int(ident)
    except (ValueError, UnicodeDecodeError):
        return None


def _conditions(tenant_id: uuid.UUID, f: AuditFilter) -> list[Any]:
    """The filter's conditions but the object's (`_object_arms`)."""
    e = audit_event.c
    conds: list[Any] = [e.tenant_id == tenant_id]
    if f.actor:
        conds.append(e.actor == f.actor)
    if f.actor_kind is not None:
        conds.append(e.actor_kind == f.actor_kind.value)
    if f.object_type:
        conds.append(e.object_type == f.object_type)
    if f.action:
        conds.append(e.action == f.action)
    if f.contact_id is not None:
        conds.append(e.contact_id == f.contact_id)
    if f.promotion_id is not None:
        conds.append(e.promotion_id == f.promotion_id)
    if f.since is not None:
        conds.append(e.at >= f.since)
    if f.until is not None:
        conds.append(e.at <= f.until)
    return conds


def _object_arms(object_id: str) -> list[list[Any]]:
    """Entries about one object, as the arms of a UNION ALL, each read from its own index newest first: the object
    index, which leaves out a contact's own entries (`models.audit.NOT_A_CONTACTS_OWN`, written the same way, so
    both planners see the index's condition), and, when the object may be a contact, the contact index. (As one
    WHERE with an OR, SQLite without statistics reads the tenant's whole log by time instead.)"""
    e = audit_event.c
    arms = [[e.object_id == object_id, text(f"({NOT_A_CONTACTS_OWN})")]]
    guid = parse_guid(object_id)
    if guid is not None:
        arms.append([e.contact_id == guid, e.object_type == "contact", e.object_id == object_id])
    return arms


def _query(tenant_id: uuid.UUID, f: AuditFilter, after: tuple[datetime, int] | None, size: int) -> Any:
    """The page's statement: newest first, after the cursor, ``size`` entries."""
    conds = _conditions(tenant_id, f)
    arms = _object_arms(f.object_id) if f.object_id else [[]]

    def newest(source: Any, where: list[Any], cursor: tuple[datetime, int] | None) -> Any:
        c = source.c
        if cursor is not None:
            where = [*where, or_(c.at < cursor[0], and_(c.at == cursor[0], c.id < cursor[1]))]
        return select(source).where(*where).order_by(c.at.desc(), c.id.desc()).limit(size)

    if len(arms) == 1:
        return newest(audit_event, conds + arms[0], after)
    # (Each arm a subquery: SQLite takes no ORDER BY/LIMIT on a compound's own members.)
    both = union_all(*(select(newest(audit_event, conds + arm, after).subquery()) for arm in arms)).subquery()
    return newest(both, [], None)


async def page(
    conn: AsyncConnection, tenant_id: uuid.UUID, f: AuditFilter, after: str | None = None, size: int = 50
) -> tuple[list[AuditEntry], str | None]:
    """One page, newest first, and the cursor of the next (keyset paging on (at, id): page 1,000 costs what page 1
    does)."""
    rows = (await conn.execute(_query(tenant_id, f, decode_cursor(after), size + 1))).all()
    entries = [AuditEntry.of(r) for r in rows[:size]]
    return entries, (encode_cursor(entries[-1]) if len(rows) > size and entries else None)


async def every(
    conn: AsyncConnection, tenant_id: uuid.UUID, f: AuditFilter, batch: int = 1000
) -> AsyncIterator[AuditEntry]:
    """Every matching entry, newest first, read a page at a time (the CSV download)."""
    cursor: str | None = None
    while True:
        entries, cursor = await page(conn, tenant_id, f, cursor, batch)
        for entry in entries:
            yield entry
        if cursor is None:
            return
