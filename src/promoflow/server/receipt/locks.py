"""Locks between a receipt kept pending for a key and a contact getting that key (see `lock_keys`)."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def lock_keys(conn: AsyncConnection, tenant_id: uuid.UUID, keys: list[tuple[str, str]]) -> None:
    """Serialise "keep a receipt pending for key K" with "a contact now has key K" (PostgreSQL; SQLite has one
    writer anyway). Without it, a receipt could miss a contact that is being created (not committed yet) while
    that contact's hook misses the receipt's pending row (not committed yet either), and the receipt would wait
    forever. Both sides take these transaction-scoped locks, the receipt before its second look-up, the hook after
    the contact is written: whichever is second sees what the first committed. Sorted: no deadlock."""
    if conn.dialect.name != "postgresql":
        return
    ids = sorted({lock_id(tenant_id, kt, value) for kt, value in keys})
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) AS k ORDER BY k"),
        {"ids": ids},
    )


def lock_id(tenant_id: uuid.UUID, key_type: str, value: str) -> int:
    digest = hashlib.sha256(f"promoflow.receipt:{tenant_id}:{key_type}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
