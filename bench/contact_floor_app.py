"""The floor of the contact benchmark (issues 15 §3, 16): a minimal ASGI app on the same server stack (uvicorn)
that does one SQL statement per request with the raw driver and no framework, auth or validation beyond
`json.loads`: a create is one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` of the contact row, an update one
``UPDATE … RETURNING``, a look-up (``GET /contacts/id?email=``) one ``SELECT`` of the id by e-mail, a read
(``GET /contacts/{id}``) one ``SELECT`` of the row, a receipt (``POST /receipts``) one ``INSERT … ON CONFLICT DO
NOTHING`` of the receipt row (the body as sent, the totals as given, no look-up of the contact or the store). PostgreSQL through psycopg 3 (async, a pool of autocommit connections); SQLite through
the standard `sqlite3` module (one connection, WAL, ``synchronous=NORMAL``, autocommit: the statement is its own
transaction).

With FLOOR_SAME_WORK=1 (SQLite; `contact_bench --floor-same-work`) an update does, bare, the work promoflow's
update must do beyond the floor's one statement, each request in a transaction of its own: the row read, the
merged attributes written with the two name search keys (casefolded, not Unicode-folded), and the
``contact.update`` audit entry (the changed keys' old and new values) into promoflow's audit table with all its
indexes. Promoflow against it: what promoflow's own layers cost on top of that work.

Run: uvicorn bench.contact_floor_app:app --port P   (env FLOOR_DATABASE_URL, FLOOR_TENANT_ID, FLOOR_SAME_WORK)
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

URL = os.environ.get("FLOOR_DATABASE_URL", "postgresql://postgres@127.0.0.1/promoflow_bench")
TENANT = os.environ.get("FLOOR_TENANT_ID", "")
POOL_SIZE = int(os.environ.get("FLOOR_POOL", "20"))
SQLITE = URL.startswith("sqlite")
SAME_WORK = os.environ.get("FLOOR_SAME_WORK") == "1"

_COLUMNS = (
    "id, tenant_id, contact_type, attributes, preferences, key_value, email, approved, created_at, updated_at"
)
PG_CREATE = f"""
INSERT INTO contact ({_COLUMNS})
VALUES (%(id)s, %(t)s, 'Member', %(attrs)s::jsonb, '{{}}'::jsonb, %(email)s, %(email)s, true, %(now)s, %(now)s)
ON CONFLICT DO NOTHING RETURNING id, attributes, created_at
"""
PG_UPDATE = """
UPDATE contact SET attributes = attributes || %(attrs)s::jsonb, updated_at = %(now)s
WHERE id = %(id)s AND tenant_id = %(t)s RETURNING id, attributes, updated_at
"""
LITE_CREATE = f"""
INSERT INTO contact ({_COLUMNS})
VALUES (:id, :t, 'Member', :attrs, '{{}}', :email, :email, 1, :now, :now)
ON CONFLICT DO NOTHING RETURNING id, attributes, created_at
"""
LITE_UPDATE = """
UPDATE contact SET attributes = json_patch(attributes, :attrs), updated_at = :now
WHERE id = :id AND tenant_id = :t RETURNING id, attributes, updated_at
"""

LITE_READ = "SELECT attributes FROM contact WHERE id = :id AND tenant_id = :t"
LITE_WRITE = """
UPDATE contact SET attributes = :attrs, name_key = :nk, name_key_rev = :nkr, updated_at = :now
WHERE id = :id AND tenant_id = :t RETURNING id, attributes, updated_at
"""
LITE_AUDIT = """
INSERT INTO audit_event (tenant_id, at, actor_kind, actor, actor_ref, action, object_type, object_id, contact_id,
                         "before", "after")
VALUES (:t, :now, 'api_key', 'floor', NULL, 'contact.update', 'contact', :oid, :id, :before, :after)
"""


def _same_work(lite: sqlite3.Connection, params: dict[str, Any]) -> Any:
    """The update with promoflow's work around it, bare (FLOOR_SAME_WORK), in a transaction of its own."""
    lite.execute("BEGIN IMMEDIATE")
    try:
        found = lite.execute(LITE_READ, params).fetchone()
        if found is None:
            return None
        attrs, change = json.loads(found[0]), json.loads(params["attrs"])
        before = {k: attrs.get(k) for k in change}
        attrs.update(change)
        first, last = (
            str(attrs.get("firstName") or "").casefold(),
            str(attrs.get("lastName") or "").casefold(),
        )
        row = lite.execute(
            LITE_WRITE,
            {**params, "attrs": json.dumps(attrs), "nk": f"{first} {last}".strip() or None,
             "nkr": f"{last} {first}".strip() or None},
        ).fetchone()  # fmt: skip
        lite.execute(
            LITE_AUDIT,
            {
                **params,
                "oid": str(uuid.UUID(params["id"])),
                "before": json.dumps(before),
                "after": json.dumps(change),
            },
        )
        lite.execute("COMMIT")
        return row
    finally:
        if lite.in_transaction:
            lite.execute("ROLLBACK")


# The reads: by e-mail (the first by creation, as promoflow's look-up), and the row by id.
READS = {
    "lookup": "SELECT id FROM contact WHERE tenant_id = {t} AND email = {v} ORDER BY created_at LIMIT 2",
    "get": "SELECT id, attributes, preferences, created_at, updated_at FROM contact WHERE id = {v} AND tenant_id = {t}",
}


async def _read(what: str, value: str) -> Any:
    if SQLITE:
        assert _lite is not None
        sql = READS[what].format(t=":t", v=":v")
        return _lite.execute(sql, {"t": uuid.UUID(TENANT).hex, "v": value}).fetchone()
    assert _pool is not None
    conn = await _pool.get()
    try:
        cur = await conn.execute(READS[what].format(t="%(t)s", v="%(v)s"), {"t": TENANT, "v": value})
        return await cur.fetchone()
    finally:
        _pool.put_nowait(conn)


RECEIPT = """
INSERT INTO receipt (id, tenant_id, unique_receipt_id, contact_id, status, match_key_type, match_key, created_date,
                     created_offset, store_external_id, currency, total_gross_price, total_discount, kind, body, via,
                     received_at)
VALUES ({id}, {t}, {u}, {cid}, 'matched', 'contactId', {c}, {now}, 0, {s}, 'SEK', {total}, 0, 'PURCHASE', {body},
        'api', {now})
ON CONFLICT DO NOTHING RETURNING id
"""


async def _receipt(sent: dict[str, Any], now: datetime) -> Any:
    contact_id = uuid.UUID(sent["contact"]["matchKey"])
    if SQLITE:
        assert _lite is not None
        sql = RECEIPT.format(
            **{k: f":{k}" for k in ("id", "t", "u", "c", "now", "s", "total", "body")}, cid=":c"
        )
        values = {
            "id": uuid.uuid4().hex,
            "t": uuid.UUID(TENANT).hex,
            "c": contact_id.hex,
            "now": now.isoformat(),
        }
        return _lite.execute(sql, {**values, "u": sent["uniqueReceiptId"], "s": sent["storeExternalId"],
                                   "total": sent["totalGrossPrice"], "body": json.dumps(sent)}).fetchone()  # fmt: skip
    assert _pool is not None
    conn = await _pool.get()
    try:
        sql = RECEIPT.format(
            **{k: f"%({k})s" for k in ("id", "t", "u", "c", "now", "s", "total")},
            cid="%(c)s::uuid",
            body="%(body)s::jsonb",
        )
        cur = await conn.execute(
            sql,
            {"id": uuid.uuid4(), "t": TENANT, "u": sent["uniqueReceiptId"], "c": str(contact_id), "now": now,
             "s": sent["storeExternalId"], "total": sent["totalGrossPrice"], "body": json.dumps(sent)},
        )  # fmt: skip
        return await cur.fetchone()
    finally:
        _pool.put_nowait(conn)


_pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
_lite: sqlite3.Connection | None = None


async def _startup() -> None:
    global _pool, _lite
    if SQLITE:
        _lite = sqlite3.connect(URL.split("///", 1)[1], isolation_level=None, check_same_thread=False)
        _lite.execute("PRAGMA journal_mode=WAL")
        _lite.execute("PRAGMA synchronous=NORMAL")
        _lite.execute("PRAGMA busy_timeout=30000")
        return
    _pool = asyncio.Queue()
    for _ in range(POOL_SIZE):
        _pool.put_nowait(await psycopg.AsyncConnection.connect(URL, autocommit=True))


def _default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _run(create: bool, params: dict[str, Any]) -> Any:
    if SQLITE:
        assert _lite is not None
        lite = {
            **params,
            "id": params["id"].hex,
            "t": uuid.UUID(TENANT).hex,
            "now": params["now"].isoformat(),
        }
        if SAME_WORK and not create:
            return _same_work(_lite, lite)
        return _lite.execute(LITE_CREATE if create else LITE_UPDATE, lite).fetchone()
    assert _pool is not None
    conn = await _pool.get()
    try:
        cur = await conn.execute(PG_CREATE if create else PG_UPDATE, {**params, "t": TENANT})
        return await cur.fetchone()
    finally:
        _pool.put_nowait(conn)


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
    now = datetime.now(UTC)
    if scope["method"] == "POST" and path == "/contacts":
        attrs = json.loads(await _body(receive))
        params = {"id": uuid.uuid4(), "attrs": json.dumps(attrs), "email": attrs.get("email"), "now": now}
        row = await _run(True, params)
        status = 201 if row else 200
    elif scope["method"] == "POST" and path.startswith("/contacts/"):
        attrs = json.loads(await _body(receive))
        row = await _run(False, {"id": uuid.UUID(path[10:]), "attrs": json.dumps(attrs), "now": now})
        status = 200 if row else 404
    elif scope["method"] == "POST" and path == "/receipts":
        row = await _receipt(json.loads(await _body(receive)), now)
        status = 200
    elif scope["method"] == "GET" and path == "/contacts/id":
        email = scope["query_string"].decode().partition("email=")[2].partition("&")[0]
        row = await _read("lookup", email)
        status = 200 if row else 404
    elif scope["method"] == "GET" and path.startswith("/contacts/"):
        ident = uuid.UUID(path[10:])
        row = await _read("get", ident.hex if SQLITE else str(ident))
        status = 200 if row else 404
    else:
        row, status = None, 404
    body = json.dumps(list(row) if row else {}, default=_default).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
