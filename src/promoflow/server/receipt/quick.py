"""The quick path of `POST /api/v2|v3/receipts` on PostgreSQL: the plain receipt in one SQL statement.

Most receipts name a known contact and no promotion. For those, everything `ReceiptService.ingest` does in its
unit of work — find the contact, insert the receipt (or see that it is a duplicate), register the store on first
sight — fits one statement (CTEs) on an autocommit connection of the fast lane's pool, instead of a transaction of
four round trips through the ORM layer. Validation, the match key and the row are `ReceiptService.prepare`, the
same as the full path; the contact look-up is the same rule as `ContactService.find_by_key` (the oldest contact
with that key, of that type when one is given).

Everything else takes the full path, which gives the same answers: SQLite, an Idempotency-Key, a body that does
not validate (the full path gives the precise 400), usedPromotions or a return (they redeem and link), and a
contact that is not found (the full path keeps the receipt pending). It is a route-level fast handler (`http.edge.fast_path`):
the caller is authorised once, by the route, whichever path answers.
"""

from __future__ import annotations

import logging

import psycopg
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql
from starlette.requests import Request
from starlette.responses import Response

from ...wire.engage import Receipt
from ..http.edge import json_bytes, json_response, state_of
from ..models.receipts import receipt
from ..tenant.service import TenantContext
from .service import CREATED, DUPLICATE, MATCHED_STATUS, ReceiptOutcome, ReceiptService
from .store import DEFAULT_TYPE, cached_type, remember

log = logging.getLogger("promoflow.receipts")

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


async def quick_receipt(request: Request, ctx: TenantContext) -> Response | None:
    """The answer to a plain receipt, or None when the full path must answer (a fast handler, see
    `http.edge.fast_path`: the caller is already authorised)."""
    st = state_of(request)
    pool = st.extras.get("fastlane")
    if pool is None or "idempotency-key" in request.headers:
        return None
    try:
        body = Receipt.model_validate_json(await request.body())
    except ValidationError:
        return None
    if body.used_promotions or body.original_unique_receipt_id is not None:
        return None
    now = st.clock.now()
    prepared = ReceiptService(ctx, now).prepare(body, via="api", body_as_json=True)
    params = {**prepared.row, "status": MATCHED_STATUS, "matched_at": now}
    params.update(key=prepared.key_value, ctype=prepared.contact_type)
    known = cached_type(ctx.tenant_id, body.store_external_id) is not None
    sql = _STATEMENTS[(prepared.key_type, prepared.contact_type is not None, known)]
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
    if row is None or row[0] is None:
        return None  # no such contact (yet): the full path keeps the receipt pending
    if row[2] is not None:
        remember(ctx.tenant_id, body.store_external_id, row[2])
    status = CREATED if row[1] is not None else DUPLICATE
    outcome = ReceiptOutcome(body.unique_receipt_id, status, receipt_id=row[1])
    return json_response(json_bytes(outcome.wire()), outcome.http_status)
