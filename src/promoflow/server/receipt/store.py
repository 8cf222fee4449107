"""Stores (extension of A12): registered on first sight, named and typed through the API. The type decides the
channel of a redeem-by-receipt: RETAIL → POS, ECOM → ECOM."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.present import without_none
from ...kit.timeutil import iso
from ...wire.engage import ChannelType
from ..dialect import insert_ignore
from ..models.receipts import store
from ..tenant.service import TenantContext
from .errors import InvalidStoreExternalIdError, StoreNotFoundError
from .schemas import STORE_DETAILS, StoreIn

DEFAULT_TYPE = "RETAIL"
CHANNEL_OF_TYPE = {"RETAIL": ChannelType.POS, "ECOM": ChannelType.ECOM}

# Known stores and their type, per process: every receipt names its store, and stores change rarely. A PUT in this
# process updates the entry at once; other API processes see a changed type within TYPE_CACHE_SECONDS.
TYPE_CACHE_SECONDS = 10.0
_types: dict[tuple[uuid.UUID, str], tuple[str, float]] = {}


def cached_type(tenant_id: uuid.UUID, external_id: str) -> str | None:
    """The store's type when this process saw it within TYPE_CACHE_SECONDS, else None."""
    cached = _types.get((tenant_id, external_id))
    return cached[0] if cached is not None and cached[1] > time.monotonic() else None


def remember(tenant_id: uuid.UUID, external_id: str, type_: str) -> str:
    if len(_types) > 100_000:
        _types.clear()
    _types[(tenant_id, external_id)] = (type_, time.monotonic() + TYPE_CACHE_SECONDS)
    return type_


def check_external_id(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 255:
        raise InvalidStoreExternalIdError("a store's externalId is 1 to 255 characters")
    return text


class StoreService:
    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now

    def _out(self, row: Any) -> dict[str, Any]:
        details = dict(row.details or {})
        return without_none({
            "externalId": row.external_id,
            "name": row.name,
            "type": row.type,
            "active": bool(row.active),
            **{name: details.get(name) for name in STORE_DETAILS},
            "createdOn": iso(row.created_at, self.ctx.tz),
            "changedOn": iso(row.updated_at, self.ctx.tz),
        })  # fmt: skip

    async def _row(self, conn: AsyncConnection, external_id: str) -> Any:
        return (
            await conn.execute(
                select(store).where(
                    store.c.tenant_id == self.ctx.tenant_id, store.c.external_id == external_id
                )
            )
        ).first()

    async def ensure(self, conn: AsyncConnection, external_id: str) -> str:
        """The store's type, registering the store (as RETAIL) when this is the first time it is seen."""
        cached = cached_type(self.ctx.tenant_id, external_id)
        if cached is not None:
            return cached
        known = await conn.scalar(
            select(store.c.type).where(
                store.c.tenant_id == self.ctx.tenant_id, store.c.external_id == external_id
            )
        )
        if known is not None:
            return remember(self.ctx.tenant_id, external_id, str(known))
        values = {
            "tenant_id": self.ctx.tenant_id,
            "external_id": external_id,
            "type": DEFAULT_TYPE,
            "active": True,
            "created_at": self.now,
            "updated_at": self.now,
        }
        await conn.execute(insert_ignore(conn, store, values))
        # A concurrent first sighting may have won the insert (and even set a type): read what is there. Not
        # remembered: this transaction may still roll back.
        return str(
            await conn.scalar(
                select(store.c.type).where(
                    store.c.tenant_id == self.ctx.tenant_id, store.c.external_id == external_id
                )
            )
        )

    async def get(self, conn: AsyncConnection, external_id: str) -> dict[str, Any]:
        row = await self._row(conn, check_external_id(external_id))
        if row is None:
            raise StoreNotFoundError(f"store {external_id!r} not found")
        return self._out(row)

    async def list(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        rows = (
            await conn.execute(
                select(store).where(store.c.tenant_id == self.ctx.tenant_id).order_by(store.c.external_id)
            )
        ).all()
        return [self._out(r) for r in rows]

    async def put(
        self, conn: AsyncConnection, external_id: str, body: StoreIn
    ) -> tuple[dict[str, Any], bool]:
        """Create or change a store; fields not given keep their value. Returns (store, created)."""
        external_id = check_external_id(external_id)
        given = body.model_dump(by_alias=True, exclude_unset=True)
        row = await self._row(conn, external_id)
        details = dict(row.details or {}) if row is not None else {}
        details.update({k: v for k, v in given.items() if k in STORE_DETAILS})
        values: dict[str, Any] = {"details": details or None, "updated_at": self.now}
        if "name" in given:
            values["name"] = given["name"]
        if given.get("type") is not None:
            values["type"] = given["type"]
        if given.get("active") is not None:
            values["active"] = given["active"]
        # Insert-or-ignore first, so two concurrent first PUTs of one store cannot collide on its key.
        fresh = {
            "tenant_id": self.ctx.tenant_id,
            "external_id": external_id,
            "type": DEFAULT_TYPE,
            "active": True,
            "created_at": self.now,
            "updated_at": self.now,
        }
        created = (
            await conn.execute(insert_ignore(conn, store, fresh).returning(store.c.external_id))
        ).first() is not None
        await conn.execute(
            update(store)
            .where(store.c.tenant_id == self.ctx.tenant_id, store.c.external_id == external_id)
            .values(**values)
        )
        row = await self._row(conn, external_id)
        _types.pop((self.ctx.tenant_id, external_id), None)
        return self._out(row), created
