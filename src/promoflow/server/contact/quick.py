"""The quick path of a contact update (`POST /api/v2/contacts/{id}`, `PATCH /api/v3/contacts/{id}`) on PostgreSQL:
the checkout's "the customer changed their details" in one SQL statement.

Profiled under load (bench/contact_bench.py, issue 15 §3), the routed update's time is spread evenly over its
round trips (read the row, write it, read it again, each through the ORM layer inside BEGIN/COMMIT): no one part
is waste to remove, the count of statements is the cost. The plain update — attributes that are not keys, and
preferences — is one ``UPDATE … RETURNING`` on an autocommit connection of the fast lane's pool that merges the
change into the stored JSON the way `ContactService.update` does (present values overwrite, ``null``/``""``
clear; preferences merge), validated by the same functions (`_clean_attributes`, `_preferences`) and answered by
the same presenter (`contact_out`, `engage_v2`).

Everything else takes the routed path, which gives the same answers: SQLite, an Idempotency-Key, a key or
look-up attribute in the body (they can conflict, and they fire the `contact_changed` hook), `contactType`, an
unknown attribute (the routed path names it in its warnings), a body that does not validate (the routed path
gives the precise 400), an id that is not a GUID or names no contact of the tenant (400/404 from the routed path).
"""

from __future__ import annotations

import json
import logging

import psycopg
from psycopg.rows import namedtuple_row
from starlette.requests import Request
from starlette.responses import Response

from ...kit.guid import parse_guid
from ..exceptions import PromoflowError
from ..http.edge import FastHandler, json_bytes, json_response, state_of
from ..tenant.service import CONTACT_TYPES, TenantContext
from .service import _LOOKUP_COLUMNS, KNOWN_ATTRIBUTES, _clean_attributes, _preferences, contact_out

log = logging.getLogger("promoflow.contacts")

ANSWERED = "contact_quick_answered"  # how many updates the quick path answered (tests compare the two paths)

_UPDATE = """
UPDATE contact
SET attributes = (attributes || %(set)s::jsonb) - %(clear)s::text[],
    preferences = preferences || %(prefs)s::jsonb,
    updated_at = %(now)s
WHERE id = %(id)s AND tenant_id = %(t)s
RETURNING id, contact_type, attributes, preferences, created_at, updated_at, source, store_external_id, approved
"""


def _plain_attributes(ctx: TenantContext) -> frozenset[str]:
    keys = {ctx.key_attribute(t) for t in CONTACT_TYPES} | set(_LOOKUP_COLUMNS) | {ctx.custom_key}
    return KNOWN_ATTRIBUTES - keys


def update(*, v3: bool) -> FastHandler:
    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        """The answer to a plain contact update, or None when the routed path must answer."""
        st = state_of(request)
        pool = st.extras.get("fastlane")
        if pool is None or "idempotency-key" in request.headers or request.url.query:
            return None
        guid = parse_guid(request.path_params.get("contact_id", ""))
        if guid is None:
            return None
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        if not isinstance(body, dict) or not set(body) <= _plain_attributes(ctx) | {"preferences"}:
            return None
        try:
            changed = _clean_attributes(body)
            prefs = _preferences(body.get("preferences"))
        except PromoflowError:
            return None
        params = {
            "set": json.dumps({k: v for k, v in changed.items() if v not in (None, "")}),
            "clear": [k for k, v in changed.items() if v in (None, "")],
            "prefs": json.dumps(prefs),
            "now": st.clock.now(),
            "id": guid,
            "t": ctx.tenant_id,
        }
        conn = await pool.acquire()
        broken = False
        try:
            cur = conn.cursor(row_factory=namedtuple_row)
            await cur.execute(_UPDATE, params)
            row = await cur.fetchone()
        except psycopg.Error:
            # Whether it committed or not, the routed path answers correctly (the same change again).
            broken = True
            log.warning("contact.quick_update_failed", exc_info=True)
            return None
        finally:
            pool.release(conn, broken)
        if row is None:
            return None  # not this tenant's contact: the routed path answers 404
        st.extras[ANSWERED] = st.extras.get(ANSWERED, 0) + 1
        out = contact_out(row, ctx.tz)
        if not v3:
            out.pop("contactType", None)
        return json_response(json_bytes(out), 200)

    return handler
