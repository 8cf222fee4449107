"""The quick path of `POST /api/v2|v3/receipts`: the plain receipt in one SQL statement on PostgreSQL, in the
fast lane's next write group on SQLite.

Most receipts name a known contact and no promotion. For those, everything `ReceiptService.ingest` does in its
unit of work — find the contact, insert the receipt (or see that it is a duplicate), register the store on first
sight — fits one statement (CTEs) on an autocommit connection of the fast lane's pool, instead of a transaction of
four round trips through the ORM layer. Validation, the match key and the row are `ReceiptService.prepare`, the
same as the full path; the contact look-up is the same rule as `ContactService.find_by_key` (the oldest contact
with that key, of that type when one is given).

On SQLite the same steps run on the lane's writing connection in its next group (`SqliteLane.write`, committed
with the redeems and contact writes around it): the contact, the receipt (``INSERT … ON CONFLICT DO NOTHING``) and,
for a receipt written, the store on first sight. Routed, a receipt there went through aiosqlite's thread for each
of its statements: ~330-380 receipts a second at 32 connections, p99 110-180 ms.

Everything else takes the full path, which gives the same answers: an Idempotency-Key, a body that does
not validate (the full path gives the precise 400), usedPromotions or a return (they redeem and link), and a
contact that is not found (the full path keeps the receipt pending). It is a route-level fast handler (`http.edge.fast_path`):
the caller is authorised once, by the route, whichever path answers.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

import psycopg
from pydantic import ValidationError
from sqlalchemy import String, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.requests import Request
from starlette.responses import Response

from ...wire.engage import Receipt
from ..contact.service import _LOOKUP_COLUMNS, holders
from ..http.edge import json_bytes, json_response, state_of
from ..models import contact
from ..models.receipts import receipt, store
from ..promotion.fastlane import LANE
from ..promotion.statements import compile_sqlite
from ..tenant.service import TenantContext
from .service import CREATED, DUPLICATE, MATCHED_STATUS, Prepared, ReceiptOutcome, ReceiptService
from .store import DEFAULT_TYPE, cached_type, remember

log = logging.getLogger("promoflow.receipts")
ANSWERED = "receipt_quick_answered"  # receipts the quick path answered (tests compare the two paths)

_KEY_CONDITION = {
    "contactId": "id = %(key)s::uuid",
    "email": "email = %(key)s",
    "mobilePhone": "mobile_phone = %(key)s",
    "socialSecurityNumber": "ssn = %(key)s",
    "memberNumber": "member_number = %(key)s",
    "externalId": "external_id = %(key)s",
}


def _sql(key_type: str, typed: bool, known_store: bool) -> str:
    pg = postgresql.dialect()
    cols = [c.name for c in receipt.c]
    exprs = []
    for col in receipt.c:
        if col.name == "contact_id":
            exprs.append("c.id")
        else:
            exprs.append(f"%({col.name})s::{col.type.compile(dialect=pg)}")
    lookup = _KEY_CONDITION[key_type]
    if typed and key_type != "contactId":
        lookup += " AND contact_type = %(ctype)s"
    # A store this process knows needs nothing; another is registered on first sight, and its type read (the
    # main query sees the store as it was before this statement: null when it is new).
    store = (
        ""
        if known_store
        else f""", st AS (
  INSERT INTO store (tenant_id, external_id, type, active, created_at, updated_at)
  SELECT %(tenant_id)s, %(store_external_id)s, '{DEFAULT_TYPE}', true, %(received_at)s, %(received_at)s FROM ins
  ON CONFLICT DO NOTHING
)"""
    )
    store_type = (
        "NULL"
        if known_store
        else "(SELECT type FROM store WHERE tenant_id = %(tenant_id)s AND external_id = %(store_external_id)s)"
    )
    return f"""
WITH c AS (
  SELECT id FROM contact WHERE tenant_id = %(tenant_id)s AND {lookup} ORDER BY created_at LIMIT 1
), ins AS (
  INSERT INTO receipt ({", ".join(cols)}) SELECT {", ".join(exprs)} FROM c
  ON CONFLICT DO NOTHING RETURNING id
){store}
SELECT (SELECT id FROM c), (SELECT id FROM ins), {store_type}
"""


_STATEMENTS = {
    (kt, typed, known): _sql(kt, typed, known)
    for kt in _KEY_CONDITION
    for typed in (False, True)
    for known in (False, True)
}


# SQLite: the same look-up (the oldest contact with the key, of the type when one is given), the receipt, the store.
_C = contact.c
_KEY_COLUMN = {"contactId": _C.id, **{kt: _C[column] for kt, column in _LOOKUP_COLUMNS.items()}}
_LITE_CONTACT = {
    (kt, typed): compile_sqlite(holders(column, _C.id, typed=typed, limit=1))
    for kt, column in _KEY_COLUMN.items()
    for typed in (False, True)
}
_LITE_RECEIPT = compile_sqlite(
    sqlite.insert(receipt)
    .values({c.name: bindparam(c.name, type_=c.type) for c in receipt.c})
    .on_conflict_do_nothing()
    .returning(receipt.c.id)
)
_S = store.c
_LITE_STORE = compile_sqlite(
    sqlite.insert(store)
    .values({c: bindparam(c, type_=_S[c].type) for c in ("tenant_id", "external_id", "type", "active", "created_at", "updated_at")})
    .on_conflict_do_nothing()
)  # fmt: skip
_LITE_STORE_TYPE = compile_sqlite(
    select(_S.type).where(
        _S.tenant_id == bindparam("t", type_=_S.tenant_id.type),
        _S.external_id == bindparam("x", type_=String()),
    )
)


def _lite_receipt(
    conn: sqlite3.Connection, prepared: Prepared, params: dict[str, Any], known_store: bool
) -> tuple[Any, Any, str | None] | None:
    """On the lane's writing connection, in its group's transaction: (contact, receipt id or None for a duplicate,
    the store's type when it was registered here), or None when no contact holds the key."""
    tenant_id = params["tenant_id"]
    key: Any = prepared.key_value
    if prepared.key_type == "contactId":
        key = uuid.UUID(str(key))
    typed = prepared.contact_type is not None and prepared.key_type != "contactId"
    find = _LITE_CONTACT[(prepared.key_type, typed)]
    found = conn.execute(find.sql, find.params(t=tenant_id, key=key, ct=prepared.contact_type)).fetchall()
    if not found:
        return None
    contact_id = find.row(found[0])[0]
    ins = _LITE_RECEIPT
    written = conn.execute(ins.sql, ins.params(**{**params, "contact_id": contact_id})).fetchall()
    receipt_id = ins.row(written[0])[0] if written else None
    store_type = None
    if receipt_id is not None and not known_store:
        at, external_id = params["received_at"], params["store_external_id"]
        conn.execute(_LITE_STORE.sql, _LITE_STORE.params(tenant_id=tenant_id, external_id=external_id,
                                                         type=DEFAULT_TYPE, active=True, created_at=at, updated_at=at))  # fmt: skip
        kind = _LITE_STORE_TYPE
        store_type = kind.row(conn.execute(kind.sql, kind.params(t=tenant_id, x=external_id)).fetchall()[0])[
            0
        ]
    return contact_id, receipt_id, store_type


async def quick_receipt(request: Request, ctx: TenantContext) -> Response | None:
    """The answer to a plain receipt, or None when the full path must answer (a fast handler, see
    `http.edge.fast_path`: the caller is already authorised)."""
    st = state_of(request)
    pool = st.extras.get("fastlane")
    lane = st.extras.get(LANE) if st.db.sqlite else None
    if (pool is None and lane is None) or "idempotency-key" in request.headers:
        return None
    try:
        body = Receipt.model_validate_json(await request.body())
    except ValidationError:
        return None
    if body.used_promotions or body.original_unique_receipt_id is not None:
        return None
    now = st.clock.now()
    known = cached_type(ctx.tenant_id, body.store_external_id) is not None
    if lane is not None:
        prepared = ReceiptService(ctx, now).prepare(body, via="api")
        params = {**prepared.row, "status": MATCHED_STATUS, "matched_at": now}
        try:
            row = await lane.write(lambda conn: _lite_receipt(conn, prepared, params, known))
        except Exception:  # rolled back: the full path answers
            log.warning("receipt.quick_failed", exc_info=True)
            return None
        return _answer(st, ctx, body.unique_receipt_id, body.store_external_id, row)
    prepared = ReceiptService(ctx, now).prepare(body, via="api", body_as_json=True)
    params = {**prepared.row, "status": MATCHED_STATUS, "matched_at": now}
    params.update(key=prepared.key_value, ctype=prepared.contact_type)
    sql = _STATEMENTS[(prepared.key_type, prepared.contact_type is not None, known)]
    assert pool is not None
    conn = await pool.acquire()
    broken = False
    try:
        row = await (await conn.execute(sql, params)).fetchone()
    except psycopg.Error:
        # Whether it committed or not, the full path answers correctly (a stored receipt is then a Duplicate).
        broken = True
        log.warning("receipt.quick_failed", exc_info=True)
        return None
    finally:
        pool.release(conn, broken)
    return _answer(st, ctx, body.unique_receipt_id, body.store_external_id, row)


def _answer(st: Any, ctx: TenantContext, unique_id: str, store_id: str, row: Any) -> Response | None:
    """(contact, receipt id or None, store type or None) as the answer; None — the full path answers — when no
    contact holds the key (it keeps the receipt pending)."""
    if row is None or row[0] is None:
        return None
    if row[2] is not None:
        remember(ctx.tenant_id, store_id, row[2])
    st.extras[ANSWERED] = st.extras.get(ANSWERED, 0) + 1
    status = CREATED if row[1] is not None else DUPLICATE
    outcome = ReceiptOutcome(unique_id, status, receipt_id=row[1])
    return json_response(json_bytes(outcome.wire()), outcome.http_status)
