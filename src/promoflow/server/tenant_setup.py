"""Creating a tenant, with whatever each feature sets up for it (e.g. its FTP account and folders)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .audit import SYSTEM, Actor
from .config import Settings
from .db import Database
from .tenant.service import TenantService
from .transfer.accounts import on_tenant_created as _ftp_account

# Each hook gets the new tenant and returns extra fields for the operator (e.g. ftpUser, ftpPassword).
TenantCreated = Callable[[AsyncConnection, Settings, Any, datetime], Awaitable[dict[str, Any]]]
TENANT_CREATED: list[TenantCreated] = [_ftp_account]


async def create_tenant(
    settings: Settings,
    now: datetime,
    name: str,
    time_zone: str = "Europe/Stockholm",
    currency: str = "SEK",
    actor: Actor = SYSTEM,
) -> dict[str, Any]:
    db = Database(settings.resolved_database_url(), pool_size=2)
    try:
        async with db.write() as conn:
            new = await TenantService(now, actor).create(conn, name, time_zone=time_zone, currency=currency)
            info: dict[str, Any] = {"tenantId": str(new.tenant_id), "name": new.name, "apiKey": new.api_key}
            for hook in TENANT_CREATED:
                info.update(await hook(conn, settings, new, now))
        return info
    finally:
        await db.dispose()
