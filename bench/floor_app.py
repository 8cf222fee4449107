"""The floor of the core benchmark: a minimal ASGI app on the same server stack (uvicorn) that runs exactly
one SQL statement per request with the raw driver (psycopg 3, async), and no framework, auth or validation.
The statements do the same database work as promoflow's: the fetch joins assignments to promotions with the
same filters; the redeem updates the assignment and inserts the redemption row in one statement.

Run: uvicorn bench.floor_app:app --port P   (env FLOOR_DATABASE_URL, FLOOR_TENANT_ID; FLOOR_DRIVER=asyncpg runs
the same statements on asyncpg, the fastest asyncio PostgreSQL driver, instead of psycopg)
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

URL = os.environ.get("FLOOR_DATABASE_URL", "postgresql://postgres@127.0.0.1/promoflow_bench")
TENANT = os.environ.get("FLOOR_TENANT_ID", "")
POOL_SIZE = int(os.environ.get("FLOOR_POOL", "20"))
DRIVER = os.environ.get("FLOOR_DRIVER", "psycopg")

FETCH = """
SELECT a.id, a.promotion_id, a.valid_from, a.valid_to, a.redeemed_at, p.external_id, p.name, p.heading,
       p.description, p.image_url, p.link, p.channels
FROM assignment a JOIN promotion p ON p.id = a.promotion_id
WHERE a.contact_id = %s AND a.tenant_id = %s AND a.deleted_at IS NULL AND p.activated_at IS NOT NULL
  AND a.redeemed_at IS NULL AND a.valid_from <= %s AND (a.valid_to IS NULL OR a.valid_to >= %s)
  AND (p.channel_mask & 1) != 0
ORDER BY a.created_at, a.id
"""
REDEEM = """
WITH won AS (
  UPDATE assignment SET redeemed_at = %(now)s, redeemed_channel = 'POS', redeemed_via = 'api',
         redemption_count = redemption_count + 1
  WHERE id = %(a)s AND tenant_id = %(t)s AND redeemed_at IS NULL
  RETURNING id, tenant_id, promotion_id, redemption_count, valid_from, valid_to
), rec AS (
  INSERT INTO redemption (id, tenant_id, assignment_id, seq, redeemed_at, channel, via, created_at)
  SELECT gen_random_uuid(), tenant_id, id, redemption_count, %(now)s, 'POS', 'api', %(now)s FROM won
)
SELECT id, promotion_id, valid_from, valid_to FROM won
"""

# The same statements with asyncpg's numbered parameters.
FETCH_ASYNCPG = (
    FETCH.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1).replace("%s", "$3", 1)
)
REDEEM_ASYNCPG = REDEEM.replace("%(now)s", "$1").replace("%(a)s", "$2::uuid").replace("%(t)s", "$3::uuid")

_pool: asyncio.Queue[Any] | None = None


async def _startup() -> None:
    global _pool
    _pool = asyncio.Queue()
    for _ in range(POOL_SIZE):
        if DRIVER == "asyncpg":
            import asyncpg

            _pool.put_nowait(await asyncpg.connect(URL))
        else:
            _pool.put_nowait(await psycopg.AsyncConnection.connect(URL, autocommit=True))


async def _fetch(conn: Any, contact: str, now: datetime) -> list[Any]:
    if DRIVER == "asyncpg":
        return [list(r) for r in await conn.fetch(FETCH_ASYNCPG, uuid.UUID(contact), uuid.UUID(TENANT), now)]
    return [list(r) for r in await (await conn.execute(FETCH, (contact, TENANT, now, now))).fetchall()]


async def _redeem(conn: Any, assignment: str, now: datetime) -> Any:
    if DRIVER == "asyncpg":
        row = await conn.fetchrow(REDEEM_ASYNCPG, now, assignment, TENANT)
        return None if row is None else list(row)
    return await (await conn.execute(REDEEM, {"now": now, "a": assignment, "t": TENANT})).fetchone()


def _default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    assert _pool is not None
    conn = await _pool.get()
    try:
        now = datetime.now(UTC)
        if scope["method"] == "GET" and path.startswith("/fetch/"):
            rows = await _fetch(conn, path[7:], now)
            status, body = 200, json.dumps(rows, default=_default).encode()
        elif scope["method"] == "POST" and path.startswith("/redeem/"):
            while (await receive()).get("more_body"):
                pass
            row = await _redeem(conn, path[8:], now)
            status, body = (200, json.dumps(list(row), default=_default).encode()) if row else (409, b"{}")
        else:
            status, body = 404, b"{}"
    finally:
        _pool.put_nowait(conn)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
