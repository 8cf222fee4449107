"""In-transaction hooks between features, so a feature can react to another's change without importing it.

The hooks are declared by the features (``features.Feature``) and installed by the composition root (the app
factory and the worker, `install`). Each runs on the same connection, inside the unit of work that made the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
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
