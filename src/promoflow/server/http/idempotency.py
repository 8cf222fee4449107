"""Idempotency keys (A9).

A key is claimed in its own short transaction (state ``running``, with a lock expiry), and its response is stored
in the *same* transaction as the write it answers. So a crash between the write and the response leaves either
no write and a claim that expires (a retry runs the request again), or the write together with its stored
response (a retry replays it) — never a replayed success that did not happen.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..dialect import insert_ignore
from ..models import idempotency_record as rec
from .errors import (
    IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
    InvalidIdempotencyKeyError,
    KeyTakenOverError,
)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidIdempotencyKeyError("Idempotency-Key must be 1 to 255 printable characters")
    return key


async def claim(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    key: str,
    fp: str,
    now: datetime,
    *,
    lock: timedelta,
    ttl: timedelta,
) -> StoredResponse | None:
    """None: the caller owns the key and must run the request. Otherwise the stored answer to replay."""
    fresh = {
        "tenant_id": tenant_id,
        "key": key,
        "fingerprint": fp,
        "state": "running",
        "locked_until": now + lock,
        "created_at": now,
        "expires_at": now + ttl,
    }
    if (await conn.execute(insert_ignore(conn, rec, fresh).returning(rec.c.key))).first() is not None:
        return None
    q = select(rec).where(rec.c.tenant_id == tenant_id, rec.c.key == key)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:  # removed between our insert and our read: claim it again
        await conn.execute(insert_ignore(conn, rec, fresh))
        return None
    if row.expires_at <= now:
        await conn.execute(update(rec).where(rec.c.tenant_id == tenant_id, rec.c.key == key).values(**fresh))
        return None
    if row.fingerprint != fp:
        raise IdempotencyKeyMismatchError(
            "this Idempotency-Key was used with a different request; use a new key for a new request"
        )
    if row.state == "done":
        return StoredResponse(row.response_status, bytes(row.response_body))
    if row.locked_until > now:
        raise IdempotencyKeyInUseError(
            "a request with this Idempotency-Key is still being processed; retry shortly"
        )
    # The first request died holding the key (its write never committed): take the key over.
    await conn.execute(
        update(rec).where(rec.c.tenant_id == tenant_id, rec.c.key == key).values(locked_until=now + lock)
    )
    return None


async def complete(
    conn: AsyncConnection, tenant_id: uuid.UUID, key: str, status: int, body: bytes, *, owner: datetime
) -> None:
    """Store the answer, in the transaction of the write it answers. ``owner`` is the lock expiry this
    request's claim set: if another request has taken the key over since, this raises and the whole
    transaction (the write included) rolls back, so a request that outlived its lock can neither apply its
    effect a second time nor replace the other request's stored answer."""
    result = await conn.execute(
        update(rec)
        .where(_held(tenant_id, key, owner))
        .values(state="done", response_status=status, response_body=body)
    )
    if not result.rowcount:
        raise KeyTakenOverError(
            "this request held its Idempotency-Key too long and another request took it over; "
            "retry to get that request's answer"
        )


async def release(conn: AsyncConnection, tenant_id: uuid.UUID, key: str, *, owner: datetime) -> None:
    """Give the key up after a failure (only if it is still this request's claim)."""
    await conn.execute(delete(rec).where(_held(tenant_id, key, owner)))


def _held(tenant_id: uuid.UUID, key: str, owner: datetime) -> Any:
    return and_(
        rec.c.tenant_id == tenant_id, rec.c.key == key, rec.c.state == "running", rec.c.locked_until == owner
    )


async def purge_expired(conn: AsyncConnection, now: datetime, limit: int | None = None) -> int:
    """Delete expired keys (at most ``limit`` of them: the retention housekeeping calls this batch by batch, one
    short transaction each, so a large backlog never holds a long lock)."""
    expired = rec.c.expires_at < now
    if limit is None:
        result = await conn.execute(delete(rec).where(expired))
    else:
        batch = select(rec.c.tenant_id, rec.c.key).where(expired).order_by(rec.c.expires_at).limit(limit)
        result = await conn.execute(delete(rec).where(tuple_(rec.c.tenant_id, rec.c.key).in_(batch)))
    return int(result.rowcount or 0)
