"""In-transaction hooks between features, so a feature can react to another's change without importing it.

The hooks are declared by the features (``features.Feature``) and installed by the composition root (the app
factory and the worker, `install`). Each runs on the same connection, inside the unit of work that made the change.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from .features import Composition
    from .tenant.service import TenantContext

ContactChanged = Callable[[AsyncConnection, "TenantContext", uuid.UUID, datetime], Awaitable[None]]

# (assignment id, promotion id) of each assignment an answer showed.
Shown = list[tuple[uuid.UUID, uuid.UUID]]
PromotionsShown = Callable[[Any, "TenantContext", uuid.UUID, Shown, str | None, datetime], Awaitable[None]]

# What the composition root installed: called after a contact is created or its key attributes change
# (receipts waiting for it are matched), and after a contact's promotions were answered (the ledger's "shown"
# events; must be cheap: it runs on the hottest path, so buffer and write in batches).
_contact_changed: tuple[ContactChanged, ...] = ()
_promotions_shown: tuple[PromotionsShown, ...] = ()


@dataclass(frozen=True)
class ContactProbe:
    """A `contact_changed` hook's question for a quick path that writes a new contact without the ORM: "would you
    have work for this contact?" (see contact/quick.py). The quick path asks in the statement that writes the
    contact, and writes it only when the answer is no; when it is yes it writes nothing and the routed path creates
    the contact and fires the hook.

    - ``keys``: the (key type, value) pairs the hook looks for, from the contact's id and key columns
      (``email``, ``mobile_phone``, ``ssn``, ``member_number``, ``external_id``; absent ones None).
    - ``lock_ids``: the PostgreSQL advisory locks the hook's own look-up takes for those keys.
    - ``pg_condition``: SQL true when the hook has work, which takes the locks itself before it looks (so it reads
      what a holder of the locks committed: a VOLATILE function's fresh snapshot); parameters ``%(t)s`` (tenant),
      ``%(ct)s`` (contact type), ``%(keys)s`` (``keys`` as JSON text) and ``%(locks)s`` (``lock_ids`` as JSON
      text).
    - ``sqlite_has_work``: the same question on a raw `sqlite3` connection inside the writer's transaction."""

    keys: Callable[[uuid.UUID, Mapping[str, str | None]], list[tuple[str, str]]]
    lock_ids: Callable[[uuid.UUID, list[tuple[str, str]]], list[int]]
    pg_condition: str
    sqlite_has_work: Callable[[sqlite3.Connection, uuid.UUID, str, list[tuple[str, str]]], bool]


_probes: dict[ContactChanged, ContactProbe] = {}


def probe(hook: ContactChanged, question: ContactProbe) -> None:
    """Declare the quick question of a `contact_changed` hook (its feature does, next to the hook)."""
    _probes[hook] = question


def contact_probes() -> tuple[ContactProbe, ...] | None:
    """The questions of every installed `contact_changed` hook; None when one of them has none (a quick path then
    declines: only the hook itself can say what it would do)."""
    found = tuple(_probes.get(h) for h in _contact_changed)
    if any(p is None for p in found):
        return None
    return tuple(p for p in found if p is not None)


def install(composition: Composition) -> None:
    """Make the composition's hooks the ones this process fires (idempotent: the same features, the same hooks)."""
    global _contact_changed, _promotions_shown
    _contact_changed = composition.contact_changed
    _promotions_shown = composition.promotions_shown


async def fire_contact_changed(
    conn: AsyncConnection, ctx: TenantContext, contact_id: uuid.UUID, now: datetime
) -> None:
    for hook in _contact_changed:
        await hook(conn, ctx, contact_id, now)


async def fire_promotions_shown(
    state: Any, ctx: TenantContext, contact_id: uuid.UUID, shown: Shown, store: str | None, now: datetime
) -> None:
    for hook in _promotions_shown:
        await hook(state, ctx, contact_id, shown, store, now)
