"""In-transaction hooks between features, so a feature can react to another's change without importing it.

Each hook runs on the same connection, inside the unit of work that made the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from .tenant.service import TenantContext

ContactChanged = Callable[[AsyncConnection, "TenantContext", uuid.UUID, datetime], Awaitable[None]]

# Called after a contact is created or its key attributes change (receipts waiting for it are matched).
contact_changed: list[ContactChanged] = []


async def fire_contact_changed(
    conn: AsyncConnection, ctx: TenantContext, contact_id: uuid.UUID, now: datetime
) -> None:
    for hook in contact_changed:
        await hook(conn, ctx, contact_id, now)


# (assignment id, promotion id) of each assignment an answer showed.
Shown = list[tuple[uuid.UUID, uuid.UUID]]
PromotionsShown = Callable[[Any, "TenantContext", uuid.UUID, Shown, str | None, datetime], Awaitable[None]]

# Called after a contact's promotions were answered (the ledger's "shown" events). Must be cheap: it runs on the
# hottest path; buffer and write in batches.
promotions_shown: list[PromotionsShown] = []


async def fire_promotions_shown(
    state: Any, ctx: TenantContext, contact_id: uuid.UUID, shown: Shown, store: str | None, now: datetime
) -> None:
    for hook in promotions_shown:
        await hook(state, ctx, contact_id, shown, store, now)
