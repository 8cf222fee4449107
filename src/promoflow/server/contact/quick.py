"""The contact writes' quick paths: the checkout's "new customer" and "the customer changed their details" with
the fewest statements, on both databases (issue 15 §3).

Profiled under load (bench/contact_bench.py, the server's CPU per request), the cost of a write is the count of
its statements and commits: each statement the driver sends costs the server more CPU than everything else the
request does, and each commit costs the database more than the row. So on PostgreSQL the writes of concurrent
requests are **gathered** (`kit.gather.Gather`, group commit): a lone request goes at once, the requests that
arrive while two batches are in flight go together in the next, and one statement writes them all — its rows as
one JSON parameter (``jsonb_to_recordset``), each row with every condition of a write of its own. Statements run
on a connection of the fast lane's asyncpg pool (`fastlane.asyncpg_pool`: each prepared once per connection).

- **Create**: one statement — the ``INSERT … SELECT`` that writes a row's contact only when no contact of that
  type holds its key (the routed path's look-up, same column, probed per row) and no `contact_changed` hook has
  work for it (a receipt waits for one of its keys: `hooks.ContactProbe`, whose condition takes the hook's
  advisory locks and then reads with a snapshot of its own — migration 0023), with the ``contact.create`` audit
  entry of each row it wrote; a batch of several first takes all its rows' locks, sorted (no cycle with another
  batch or a receipt): the statement itself before it reads a row, or, when its rows need several statements
  (different key columns), a transaction around them. A batch the database refuses (one row's value too long) is
  tried row by row, so only that row goes to the routed path. The member number comes from the process's block
  (`numbers.block_number`, shared with the routed path). SQLite, on the lane's writer thread
  (`SqliteLane.write`, group-committed with the redeems): the same look-up, the number from the counter, the
  hooks' question and the insert, in the writer's transaction. A create whose key a contact already holds (a POS
  that creates to "create or get") is answered on both as the routed path answers it: 200 with that contact
  (the first created), unchanged — no entry, no hook.
- **Update** (plain attributes — not keys — and preferences): two statements per batch — the rows read with their
  versions (``xmin``); then, merged in Python as `ContactService.update` merges it (present values overwrite,
  ``null``/``""`` clear; preferences merge), the ``UPDATE … RETURNING`` of the versions read only, with their
  ``contact.update`` audit entries where something changed; a row another write changed in between (or that an
  earlier update of the batch changed) is read again. SQLite, on the writer thread: the row read, merged, written
  back (its name search keys only when they changed), and the audit entry, in the writer's transaction.

Both write what the routed path writes: the name search keys (`name_keys`, with the other derived columns of
`_columns`) and the audit entry (`audit.entry_values`: ``contact.create`` with `created_view`, ``contact.update``
with the `diff` of `audit_view`, none for an unchanged contact or an actor that is not itemised), at the same
``now``, in the change's transaction. SQLite's statements are compiled from the tables (`compile_sqlite`);
PostgreSQL's batch statements are written from the tables' columns.

Both validate with the routed path's functions (`_clean_attributes`, `_preferences`, `contact_type_of`) and answer
with its presenter (`contact_out`, v2 without ``contactType``). Whatever they do not handle the routed path answers,
with the same result: an Idempotency-Key or a query string, an unknown attribute (the routed path names it), a
body that does not validate, a key or look-up attribute in an update (it can conflict and fires the hook), a create
whose key is missing, a create that a hook has work for (the routed path creates the contact and
fires the hook), an id that is not a GUID or names no contact of the tenant, a write the database refused.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

import asyncpg
import pydantic_core
from sqlalchemy import JSON, bindparam, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from starlette.requests import Request
from starlette.responses import Response

from ...kit.gather import Gather, first_of_each
from ...kit.guid import parse_guid
from ..audit import diff, entry_values
from ..exceptions import PromoflowError
from ..hooks import ContactProbe, contact_probes
from ..http.edge import AppState, FastHandler, json_bytes, json_response, state_of
from ..models import audit_event, contact, member_number_counter
from ..promotion.fastlane import LANE, LANE_ERRORS, AsyncpgPool, asyncpg_pool
from ..promotion.statements import compile_sqlite
from ..tenant.service import CONTACT_TYPES, TenantContext
from .numbers import block_number, format_number
from .service import (
    _LOOKUP_COLUMNS,
    _NOT_ATTRIBUTES,
    KNOWN_ATTRIBUTES,
    _clean_attributes,
    _columns,
    _preferences,
    audit_view,
    contact_out,
    contact_type_of,
    created_view,
    holders,
    lookup_question,
    name_keys,
)

log = logging.getLogger("promoflow.contacts")
_W = TypeVar("_W")
_I = TypeVar("_I")

_CREATES = "contact_quick_creates"  # the app's `Gather`s of PostgreSQL creates and updates
_UPDATES = "contact_quick_updates"
ANSWERED = "contact_quick_answered"  # how many writes the quick paths answered (tests compare the two paths)

_RETURNED = (
    "id, contact_type, attributes, preferences, created_at, updated_at, source, store_external_id, approved"
)
_KEY_COLUMNS = ("key_value", "email", "mobile_phone", "ssn", "member_number", "external_id")

_C = contact.c
_P_TENANT = bindparam("t", type_=_C.tenant_id.type)
_P_ID = bindparam("id", type_=_C.id.type)
_RETURNING = (_C.id, _C.contact_type, _C.attributes, _C.preferences, _C.created_at, _C.updated_at, _C.source,
              _C.store_external_id, _C.approved)  # fmt: skip
# The update's values: the merged JSON, the time, and the name search keys (`name_keys`) of the merged names.
_UPDATE_VALUES = {
    "attributes": bindparam("attrs", type_=_C.attributes.type),
    "preferences": bindparam("prefs", type_=_C.preferences.type),
    "updated_at": bindparam("now", type_=_C.updated_at.type),
    **{k: bindparam(k, type_=_C[k].type) for k in name_keys({})},
}
_UPDATE = sql_update(contact).where(_C.id == _P_ID, _C.tenant_id == _P_TENANT).values(_UPDATE_VALUES)
_AUDIT_BINDS = {c.name: bindparam(c.name, type_=c.type) for c in audit_event.columns if c.name != "id"}

# ------------------------------------------------------------------------------------------------- PostgreSQL


def _pg_type(column: Any) -> str:
    """A column's type as a batch field's (no length: too long a value fails as the routed path's insert does)."""
    return re.sub(r"\(.*", "", column.type.compile(dialect=postgresql.dialect()))


_PG_TYPES = {c.name: _pg_type(c) for c in contact.columns}
_TRIES = 3  # reads of a row that others keep changing, before the routed path (which waits its turn) answers

# A batch's rows come as one JSON parameter (``jsonb_to_recordset``: a statement for any number of rows), each with
# its audit entry's columns as ``e_…`` fields (``e``: the row has one).
_AUDIT_COLUMNS = tuple(c.name for c in audit_event.columns if c.name != "id")
_ENTRY_FIELDS = {"e": "boolean", **{f"e_{c}": _pg_type(audit_event.c[c]) for c in _AUDIT_COLUMNS}}
# The audit entries of the rows ``changed`` wrote; JSON null where `entry_values` has None (as SQLAlchemy writes it).
_PG_ENTRIES = f"""
entry AS (
INSERT INTO audit_event ({", ".join(_AUDIT_COLUMNS)})
SELECT {", ".join(f"coalesce(r.e_{c}, 'null'::jsonb)" if c in ("before", "after") else f"r.e_{c}" for c in _AUDIT_COLUMNS)}
FROM changed JOIN r ON r.id = changed.id WHERE r.e)"""  # fmt: skip


def _json(value: Any) -> str:
    """JSON text of a batch (a fifth of `json.dumps`' time; UUIDs and instants as text PostgreSQL reads; NaN and
    infinities as `json.dumps` writes them, which PostgreSQL refuses as it does the routed path's)."""
    return pydantic_core.to_json(value, inf_nan_mode="constants").decode()


def _rows_of(fields: dict[str, str], *, locked: bool = False) -> str:
    """The CTE ``r``: the batch's rows, from the JSON parameter, with these fields (name → SQL type). ``locked``:
    the advisory locks of the second parameter are taken first, in order — no row of ``r`` exists before the
    count of every lock taken (`_PG_LOCKED_FIRST`), so nothing that reads ``r`` runs before them."""
    rows = f"jsonb_to_recordset($1::jsonb) AS r({', '.join(f'{k} {t}' for k, t in fields.items())})"
    if locked:
        return f"{_PG_LOCKED_FIRST},\nr AS (SELECT r.* FROM {rows} CROSS JOIN (SELECT count(*) FROM locks) AS held)"
    return f"r AS (SELECT * FROM {rows})"


def _locks_in_order(param: int) -> str:
    """Take the advisory locks of bigint array parameter ``param``, sorted."""
    return f"SELECT pg_advisory_xact_lock(k) FROM unnest(${param}::bigint[]) AS k ORDER BY k"


_PG_LOCKED_FIRST = f"locks AS MATERIALIZED ({_locks_in_order(2)})"


def _entry_fields(entry: dict[str, Any] | None) -> dict[str, Any]:
    """A row's audit entry (`audit.entry_values`) as its ``e_…`` fields."""
    if entry is None:
        return {"e": False}
    return {"e": True, **{f"e_{c}": entry[c] for c in _AUDIT_COLUMNS}}


# The updates: the rows read with their versions (``xmin``: the transaction that wrote the row, changed by every
# write); then the merged values written only to the version that was read. The rows to update are found by their
# ids as an array (an index scan of exactly those rows, whatever the table's size when the plan was cached), then
# joined to the batch.
_PG_READ_MANY = (
    f"SELECT xmin::text AS xmin, id, tenant_id, {_RETURNED} FROM contact WHERE id = ANY($1::uuid[])"
)
_SET = {column: value.key for column, value in _UPDATE_VALUES.items()}  # column → the batch's field
_PG_UPDATE_MANY = f"""
WITH {_rows_of({"id": "uuid", "t": "uuid", "xmin": "text", "attrs": "jsonb", "prefs": "jsonb", "now": "timestamptz",
                **{k: _PG_TYPES[k] for k in name_keys({})}, **_ENTRY_FIELDS})},
changed AS (
UPDATE contact SET {", ".join(f"{c} = r.{f}" for c, f in _SET.items())}
FROM r
WHERE contact.id = ANY(ARRAY(SELECT id FROM r)) AND contact.id = r.id AND contact.tenant_id = r.t
  AND contact.xmin::text = r.xmin
RETURNING {", ".join(f"contact.{c.strip()}" for c in _RETURNED.split(","))}),{_PG_ENTRIES}
SELECT * FROM changed"""  # fmt: skip


# ----------------------------------------------------------------------------------------------------- SQLite

_NAME_KEYS = tuple(name_keys({}))
# The row, and its name search keys as stored.
_LITE_ROW = compile_sqlite(
    select(*_RETURNING, *(_C[k] for k in _NAME_KEYS)).where(_C.id == _P_ID, _C.tenant_id == _P_TENANT)
)
# No RETURNING: in the writer's transaction the row read is the row written, and the answer is that row with the
# values written (a RETURNING row's conversion back cost more than the statement).
_LITE_UPDATE = compile_sqlite(_UPDATE)
# When the names did not change: SQLite rewrites the entries of every index whose column the UPDATE sets, equal
# or not (the two name indexes: ~20 µs an update), so the name keys are left out.
_LITE_UPDATE_SAME_NAMES = compile_sqlite(
    sql_update(contact)
    .where(_C.id == _P_ID, _C.tenant_id == _P_TENANT)
    .values({c: v for c, v in _UPDATE_VALUES.items() if c not in _NAME_KEYS})
)
_LITE_AUDIT = compile_sqlite(insert(audit_event).values(_AUDIT_BINDS))
# The contact of that type that holds a create's key, as the routed path finds it (the first created).
_LITE_HELD = {
    column: compile_sqlite(holders(_C[column], *_RETURNING, typed=True, limit=1))
    for column in {*_LOOKUP_COLUMNS.values(), "key_value"}
}
_N = member_number_counter.c
_LITE_NUMBER = compile_sqlite(
    sqlite.insert(member_number_counter)
    .values(tenant_id=_P_TENANT, next_value=1)
    .on_conflict_do_update(index_elements=[_N.tenant_id], set_={"next_value": _N.next_value + 1})
    .returning(_N.next_value)
)
_LITE_INSERT = compile_sqlite(
    sqlite.insert(contact)
    .values({c.name: bindparam(c.name, type_=c.type) for c in contact.columns})
    .on_conflict_do_nothing()
)


# The look-up's question (`service.lookup_question`) asked of a column, with or without a contact type: the first
# two contacts by creation that hold the value (two: more than one is the routed path's "several match").
_ASKED = frozenset({*_LOOKUP_COLUMNS.values(), "member_number"})
_LITE_LOOKUP = {
    (column, typed): compile_sqlite(holders(_C[column], _C.id, typed=typed, limit=2))
    for column in _ASKED
    for typed in (False, True)
}
_PG_LOOKUP = {
    (column, typed): f"SELECT id FROM contact WHERE tenant_id = $1 AND {column} = $2"
    f"{' AND contact_type = $3' if typed else ''} ORDER BY created_at LIMIT 2"
    for column in _ASKED
    for typed in (False, True)
}
_PG_GET = f"SELECT {_RETURNED} FROM contact WHERE id = $1 AND tenant_id = $2"
_LOOKUP_PARAMS = frozenset(
    {"email", "mobilePhone", "socialSecurityNumber", "customKey", "any", "contactType"}
)


class _Row(NamedTuple):
    id: uuid.UUID
    contact_type: str
    attributes: dict[str, Any]
    preferences: dict[str, Any]
    created_at: Any
    updated_at: Any
    source: str | None
    store_external_id: str | None
    approved: bool
    held: bool = False  # a create's answer: the contact that already held its key (200, unchanged)


def _pg_row(record: asyncpg.Record, skip: int = 0) -> _Row:
    """A contact row that asyncpg answered (from column ``skip`` on: `_RETURNED`'s columns); JSON comes as text."""
    r = record
    return _Row(
        r[skip], r[skip + 1], json.loads(r[skip + 2]), json.loads(r[skip + 3]), *r[skip + 4 : skip + 9]
    )


def _lite_row(
    conn: sqlite3.Connection, stmt: Any, params: dict[str, Any]
) -> tuple[_Row, tuple[Any, ...]] | None:
    """The contact row, and what the statement selects after its columns."""
    raw = conn.execute(stmt.sql, params).fetchall()  # to the end: the statement is done before COMMIT
    if not raw:
        return None
    values = stmt.row(raw[0])
    return _Row(*values[: len(_RETURNING)]), values[len(_RETURNING) :]


def _lite_audit(conn: sqlite3.Connection, entry: dict[str, Any] | None) -> None:
    """Append the entry (`audit.entry_values`) in the writer's transaction; ``None`` as JSON null, as SQLAlchemy
    writes it."""
    if entry is not None:
        json_null = {k: JSON.NULL for k in ("before", "after") if entry[k] is None}
        conn.execute(_LITE_AUDIT.sql, _LITE_AUDIT.params(**{**entry, **json_null}))


# ------------------------------------------------------------------------------------------------- the shared


def _lanes(st: AppState) -> tuple[AsyncpgPool | None, Any] | None:
    """The app's database side — PostgreSQL's pool or SQLite's lane (the other None) — or None without a fast
    lane."""
    pool = asyncpg_pool(st)
    lane = st.extras.get(LANE) if st.db.sqlite else None
    return None if pool is None and lane is None else (pool, lane)


def _sides(request: Request) -> tuple[AppState, Any, Any] | None:
    """The app's state and its database side (`_lanes`) for a request the quick paths may answer; None when the
    routed path must (no fast lane, an Idempotency-Key, a query string)."""
    st = state_of(request)
    lanes = _lanes(st)
    if lanes is None or "idempotency-key" in request.headers or request.scope.get("query_string"):
        return None
    return st, *lanes


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _counted(st: AppState, answer: Response) -> Response:
    """A quick path's answer, counted (`ANSWERED`)."""
    st.extras[ANSWERED] = st.extras.get(ANSWERED, 0) + 1
    return answer


def _answer(st: AppState, ctx: TenantContext, row: Any, status: int, *, v3: bool) -> Response:
    out = contact_out(row, ctx.tz)
    if not v3:
        out.pop("contactType", None)
    return _counted(st, json_response(json_bytes(out), status))


def _plain_attributes(ctx: TenantContext) -> frozenset[str]:
    keys = {ctx.key_attribute(t) for t in CONTACT_TYPES} | set(_LOOKUP_COLUMNS) | {ctx.custom_key}
    return KNOWN_ATTRIBUTES - keys


def _merged(stored: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """`ContactService.update`'s merge: present values overwrite, null or "" clear."""
    attrs = dict(stored)
    for name, value in changed.items():
        if value is None or value == "":
            attrs.pop(name, None)
        else:
            attrs[name] = value
    return attrs


def _change(ctx: TenantContext, row: Any, changed: dict[str, Any], prefs_body: Any,
            now: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """What `ContactService.update` writes for a plain change of the stored ``row``: the update's values (the
    merged attributes and preferences, the name search keys) and its ``contact.update`` entry (None when nothing
    changed or the actor is not itemised)."""
    attrs = _merged(row.attributes, changed)
    prefs = _preferences(prefs_body, row.preferences)
    values = {
        "id": row.id,
        "t": ctx.tenant_id,
        "now": now,
        "attrs": attrs,
        "prefs": prefs,
        **name_keys(attrs),
    }
    before, after = diff(audit_view(row.contact_type, dict(row.attributes), dict(row.preferences)),
                         audit_view(row.contact_type, attrs, prefs))  # fmt: skip
    if not (before or after):
        return values, None
    entry = entry_values(ctx.tenant_id, ctx.actor, "contact.update", "contact", row.id, before, after, at=now,
                         contact_id=row.id)  # fmt: skip
    return values, entry


def update(*, v3: bool) -> FastHandler:
    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        """The answer to a plain contact update, or None when the routed path must answer."""
        sides = _sides(request)
        if sides is None:
            return None
        st, pool, lane = sides
        guid = parse_guid(request.path_params.get("contact_id", ""))
        if guid is None:
            return None
        body = await _json_body(request)
        if body is None or not set(body) <= _plain_attributes(ctx) | {"preferences"}:
            return None
        try:
            changed = _clean_attributes(body)
            _preferences(body.get("preferences"))
        except PromoflowError:
            return None
        now = st.clock.now()
        if lane is not None:

            def write(conn: sqlite3.Connection) -> _Row | None:
                found = _lite_row(conn, _LITE_ROW, _LITE_ROW.params(id=guid, t=ctx.tenant_id))
                if found is None:
                    return None
                row, names = found
                values, entry = _change(ctx, row, changed, body.get("preferences"), now)
                same = names == tuple(values[k] for k in _NAME_KEYS)
                stmt = _LITE_UPDATE_SAME_NAMES if same else _LITE_UPDATE
                conn.execute(stmt.sql, stmt.params(**values))
                _lite_audit(conn, entry)
                return row._replace(attributes=values["attrs"], preferences=values["prefs"], updated_at=now)

            try:
                found = await lane.write(write)
            except Exception:  # rolled back: the routed path answers (the same change again)
                return None
            return None if found is None else _answer(st, ctx, found, 200, v3=v3)
        row = await pg_updates(st, pool)(_UpdateItem(ctx, guid, changed, body.get("preferences"), now))
        return None if row is None else _answer(st, ctx, row, 200, v3=v3)

    return handler


def get(*, v3: bool) -> FastHandler:
    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        """The answer to `GET /contacts/{id}` (the contact), or None when the routed path must answer: not a
        GUID (its 400), no contact of the tenant (its 404), a query string."""
        sides = _sides(request)
        guid = parse_guid(request.path_params.get("contact_id", ""))
        if sides is None or guid is None:
            return None
        st, pool, lane = sides
        row: _Row | None
        if lane is not None:
            binds = _LITE_ROW.params(id=guid, t=ctx.tenant_id)
            try:
                found = await lane.read(lambda conn: _lite_row(conn, _LITE_ROW, binds))
            except sqlite3.Error:
                log.warning("contact.quick_get_failed", exc_info=True)
                return None
            row = None if found is None else found[0]
        else:
            assert pool is not None
            records = await _on_lane(pool, "get", lambda conn: conn.fetch(_PG_GET, guid, ctx.tenant_id))
            row = _pg_row(records[0]) if records else None
        return None if row is None else _answer(st, ctx, row, 200, v3=v3)

    return handler


def lookup() -> FastHandler:
    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        """The answer to `GET /contacts/id` (the contact's id as a JSON string) when exactly one contact holds
        the key; None when the routed path must answer: a question it refuses, a parameter given twice or one it
        does not know, no contact or several (its 404, its "several match")."""
        st = state_of(request)
        lanes = _lanes(st)
        if lanes is None:
            return None
        pool, lane = lanes
        given = request.query_params.multi_items()
        names = {name for name, _ in given}
        if len(names) != len(given) or not names <= _LOOKUP_PARAMS:
            return None
        params = dict(given)
        try:
            column, value, contact_type = lookup_question(ctx, {k: params.get(k) for k in _LOOKUP_PARAMS})
        except PromoflowError:
            return None
        if column not in _ASKED:
            return None
        typed = contact_type is not None
        if lane is not None:
            stmt = _LITE_LOOKUP[column, typed]
            binds = stmt.params(t=ctx.tenant_id, key=value, ct=contact_type)
            try:
                found = await lane.read(lambda conn: [stmt.row(r)[0] for r in conn.execute(stmt.sql, binds)])
            except sqlite3.Error:
                log.warning("contact.quick_lookup_failed", exc_info=True)
                return None
        else:
            assert pool is not None
            args = [ctx.tenant_id, value, *([contact_type] if typed else [])]
            sql = _PG_LOOKUP[column, typed]
            rows = await _on_lane(pool, "lookup", lambda conn: conn.fetch(sql, *args))
            if rows is None:
                return None
            found = [r[0] for r in rows]
        if len(found) != 1:
            return None
        return _counted(st, json_response(json_bytes(str(found[0])), 200))

    return handler


async def _on_lane(pool: AsyncpgPool, what: str, work: Callable[[Any], Awaitable[_W]]) -> _W | None:
    """``work`` on a connection of the fast lane's pool. None — the routed path answers, correctly whether the
    write committed or not (it finds the contact, or makes the same change again, which records nothing) — when no
    connection can be had or the database refused."""
    try:
        conn = await pool.acquire()
    except LANE_ERRORS:
        log.warning("contact.quick_connect_failed", exc_info=True)
        return None
    broken = False
    try:
        return await work(conn)
    except LANE_ERRORS:
        broken = True
        log.warning("contact.quick_%s_failed", what, exc_info=True)
        return None
    finally:
        pool.release(conn, broken)


class _UpdateItem(NamedTuple):
    ctx: TenantContext
    guid: uuid.UUID
    changed: dict[str, Any]
    prefs_body: Any
    now: Any


async def _pg_write_updates(pool: AsyncpgPool, items: list[_UpdateItem]) -> list[_Row | None]:
    """A batch of updates, each statement its own transaction: the rows read with their versions; then the merged
    changes with their audit entries, each written only if its row is still the version that was read
    (``xmin``). An update whose row changed in between (another write; or an earlier update of the same contact
    in this batch, which goes first) is read again, up to `_TRIES` times; then the routed path, which waits its
    turn, answers. None, too, when the tenant has no such contact (the routed path answers 404)."""

    async def write(conn: Any) -> list[_Row | None]:
        done: list[_Row | None] = [None] * len(items)
        todo = list(range(len(items)))
        for _ in range(_TRIES):
            if not todo:
                break
            read = {r[1]: r for r in await conn.fetch(_PG_READ_MANY, list({items[i].guid for i in todo}))}
            # The same contact again in the batch: after the first, from what it wrote.
            first, later = first_of_each(todo, lambda i: items[i].guid)
            now_rows: list[dict[str, Any]] = []
            going: list[int] = []
            for i in first.values():
                item = items[i]
                record = read.get(item.guid)
                if record is None or record[2] != item.ctx.tenant_id:
                    continue  # not this tenant's contact
                values, entry = _change(item.ctx, _pg_row(record, 3), item.changed, item.prefs_body, item.now)
                now_rows.append({**values, "xmin": record[0], **_entry_fields(entry)})
                going.append(i)
            # In id order: every batch locks its rows in one order, so two batches never wait in a cycle.
            now_rows.sort(key=itemgetter("id"))
            written = (
                {r[0]: _pg_row(r) for r in await conn.fetch(_PG_UPDATE_MANY, _json(now_rows))}
                if now_rows
                else {}
            )
            for i in going:
                done[i] = written.get(items[i].guid)
            todo = later + [i for i in going if done[i] is None]
        return done

    written = await _on_lane(pool, "update", write)
    return [None] * len(items) if written is None else written


def _gathered(
    st: AppState, name: str, run: Callable[[list[_I]], Awaitable[list[_Row | None]]]
) -> Gather[_I, _Row | None]:
    """The app's gatherer ``name`` of quick writes (made on first use)."""
    gather: Gather[_I, _Row | None] | None = st.extras.get(name)
    if gather is None:
        gather = st.extras[name] = Gather(run, at_once=2)
    return gather


def pg_updates(st: AppState, pool: AsyncpgPool) -> Gather[_UpdateItem, _Row | None]:
    return _gathered(st, _UPDATES, lambda items: _pg_write_updates(pool, items))


class _Create(NamedTuple):
    """A create the quick path handles: validated like the routed path, the key look-up decided."""

    contact_type: str
    attrs: dict[str, Any]
    prefs: dict[str, Any]
    column: str  # the routed path's look-up column for the key
    key: str | None  # the key from the body (None: the key is the member number to be generated)
    generated: (
        bool  # a member number is generated (the tenant's customKey is memberNumber and none was given)
    )
    source: str | None
    store: str | None
    approved: bool


def _planned(ctx: TenantContext, body: dict[str, Any], headers: Any, *, v3: bool) -> _Create | None:
    if not set(body) <= KNOWN_ATTRIBUTES | _NOT_ATTRIBUTES:
        return None  # an unknown attribute: the routed path names it in its warnings
    try:
        contact_type = contact_type_of(body.get("contactType"))
        attrs = _clean_attributes(body)
        prefs = _preferences(body.get("preferences"))
    except PromoflowError:
        return None
    key_attr = ctx.key_attribute(contact_type)
    key = attrs.get(key_attr)
    generated = ctx.custom_key == "memberNumber" and attrs.get("memberNumber") in (None, "")
    if key in (None, ""):
        if not (generated and key_attr == "memberNumber"):
            return None  # no key: a 400, or a contact without one (the routed path knows)
        key = None
    if v3:  # v3 takes these as query parameters, and the quick path declines a query string
        source = store = unapproved = None
    else:
        source, store = headers.get("source"), headers.get("storeexternalid")
        unapproved = headers.get("createasunapproved")
    approved = (unapproved or "false").strip().lower() != "true"
    column = _LOOKUP_COLUMNS.get(key_attr, "key_value")
    return _Create(
        contact_type,
        attrs,
        prefs,
        column,
        None if key is None else str(key),
        generated,
        source,
        store,
        approved,
    )


def _create_entry(ctx: TenantContext, plan: _Create, attrs: dict[str, Any], new_id: uuid.UUID,
                  now: Any) -> dict[str, Any] | None:  # fmt: skip
    """`ContactService.create`'s ``contact.create`` entry (None when the actor is not itemised)."""
    after = created_view(plan.contact_type, attrs, plan.prefs, plan.source, plan.store)
    return entry_values(ctx.tenant_id, ctx.actor, "contact.create", "contact", new_id, after=after, at=now,
                        contact_id=new_id)  # fmt: skip


def _values(
    ctx: TenantContext, plan: _Create, attrs: dict[str, Any], new_id: uuid.UUID, now: Any
) -> dict[str, Any]:
    return {
        "id": new_id,
        "tenant_id": ctx.tenant_id,
        "contact_type": plan.contact_type,
        "attributes": attrs,
        "preferences": plan.prefs,
        "source": plan.source,
        "store_external_id": plan.store,
        "approved": plan.approved,
        "created_at": now,
        "updated_at": now,
        **_columns(ctx, plan.contact_type, attrs),
    }


def create(*, v3: bool) -> FastHandler:
    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        """The answer to a plain contact create (201), or None when the routed path must answer."""
        sides = _sides(request)
        if sides is None:
            return None
        st, pool, lane = sides
        probes = contact_probes()
        if probes is None:
            return None
        body = await _json_body(request)
        plan = None if body is None else _planned(ctx, body, request.headers, v3=v3)
        if plan is None:
            return None
        now = st.clock.now()
        new_id = uuid.uuid4()
        if lane is not None:
            try:
                row = await lane.write(lambda conn: _lite_create(conn, ctx, plan, probes, new_id, now))
            except Exception:  # rolled back: the routed path answers
                return None
        else:
            row = await pg_creates(st, pool)(_CreateItem(ctx, plan, probes, new_id, now))
        return None if row is None else _answer(st, ctx, row, 200 if row.held else 201, v3=v3)

    return handler


def _lite_create(conn: sqlite3.Connection, ctx: TenantContext, plan: _Create, probes: tuple[ContactProbe, ...],
                 new_id: uuid.UUID, now: Any) -> _Row | None:  # fmt: skip
    """On the writer thread, in its transaction (no other writer: look-ups and writes cannot race)."""
    t = ctx.tenant_id
    if plan.key is not None:
        held = _LITE_HELD[plan.column]
        found = _lite_row(conn, held, held.params(t=t, key=plan.key, ct=plan.contact_type))
        if found is not None:
            return found[0]._replace(held=True)  # the key is held: that contact, unchanged
    attrs = dict(plan.attrs)
    if plan.generated:
        number = conn.execute(_LITE_NUMBER.sql, _LITE_NUMBER.params(t=t)).fetchall()[0][0]
        attrs["memberNumber"] = format_number(int(number))
    values = _values(ctx, plan, attrs, new_id, now)
    columns = {c: values[c] for c in _KEY_COLUMNS}
    if any(p.sqlite_has_work(conn, t, plan.contact_type, p.keys(new_id, columns)) for p in probes):
        return None
    if conn.execute(_LITE_INSERT.sql, _LITE_INSERT.params(**values)).rowcount != 1:
        return None  # a unique key another contact holds: the routed path answers
    _lite_audit(conn, _create_entry(ctx, plan, attrs, new_id, now))
    return _Row(
        new_id, plan.contact_type, attrs, plan.prefs, now, now, plan.source, plan.store, plan.approved
    )


# The creates of concurrent requests, gathered (`kit.gather`): one statement writes a batch, its rows as one JSON
# parameter (``jsonb_to_recordset``), each row with the look-up, the hooks' question and its audit entry of the
# single create. By (key column, the probes' conditions, the derived columns, whether it takes the locks first).
_pg_creates: dict[tuple[str, tuple[str, ...], tuple[str, ...], bool], str] = {}
# Taken before a batch of several creates whose rows need more than one statement (a batch of one statement takes
# them itself, `_rows_of`): every row's advisory locks, in one sorted pass (each row's question
# takes its own again — already held — so two batches, or a batch and a receipt, never wait on each other in a
# cycle).
_PG_LOCK_ALL = _locks_in_order(1)


class _CreateItem(NamedTuple):
    ctx: TenantContext
    plan: _Create
    probes: tuple[ContactProbe, ...]
    new_id: uuid.UUID
    now: Any


def _row_refs(condition: str, i: int) -> str:
    """A probe's condition (`hooks.ContactProbe.pg_condition`) on the batch's row ``r``: its ``%(keys)s`` and
    ``%(locks)s`` are the row's ``keysI``/``locksI`` (probe ``i``'s), its other parameters the row's fields."""

    def field(m: re.Match[str]) -> str:
        return f"r.{m.group(1)}{i}" if m.group(1) in ("keys", "locks") else f"r.{m.group(1)}"

    return re.sub(r"%\((\w+)\)s", field, condition)


def _pg_create_sql(
    column: str, conditions: tuple[str, ...], derived: tuple[str, ...], *, locked: bool
) -> str:
    """The batch's statement: a row's contact is written only when no contact of its type holds its key in
    ``column`` (the routed path's look-up, ``holder``: a LATERAL probe of the index per row — as a NOT EXISTS the
    planner may join the batch to the whole table, and a plan cached while the table was small then scans it as
    it grows) and no hook has work for it (``conditions``, with ``%(keysN)s`` and ``%(locksN)s`` from the row);
    any unique conflict writes nothing; the audit entry of each row written (the rows with ``e``). Answers, each
    with the id of the batch's row it answers (``asked``), the rows written and — ``held`` — the contacts that
    already held a row's key (the first created, as the routed path answers: 200 with it, unchanged).
    ``locked``: every row's advisory locks (the second parameter) are taken first, sorted (`_rows_of`)."""
    fields = {
        "id": "uuid", "t": "uuid", "ct": "varchar", "key": "text", "attrs": "jsonb", "prefs": "jsonb",
        "source": "varchar", "store": "varchar", "approved": "boolean", "now": "timestamptz",
        **{c: _PG_TYPES[c] for c in derived}, **{f"keys{i}": "jsonb" for i in range(len(conditions))},
        **{f"locks{i}": "jsonb" for i in range(len(conditions))}, **_ENTRY_FIELDS,
    }  # fmt: skip
    waiting = "".join(f" AND NOT {_row_refs(c, i)}" for i, c in enumerate(conditions))
    return f"""
WITH {_rows_of(fields, locked=locked)},
holder AS (
SELECT r.id AS asked, h.* FROM r CROSS JOIN LATERAL (
  SELECT {_RETURNED} FROM contact WHERE tenant_id = r.t AND {column} = r.key AND contact_type = r.ct
  ORDER BY created_at LIMIT 1) AS h),
changed AS (
INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, source, store_external_id, approved,
                     created_at, updated_at, {", ".join(derived)})
SELECT r.id, r.t, r.ct, r.attrs, r.prefs, r.source, r.store, r.approved, r.now, r.now,
       {", ".join(f"r.{c}" for c in derived)}
FROM r
WHERE r.id NOT IN (SELECT asked FROM holder){waiting}
ON CONFLICT DO NOTHING
RETURNING {_RETURNED}),{_PG_ENTRIES}
SELECT id AS asked, false AS held, * FROM changed
UNION ALL SELECT asked, true, {_RETURNED} FROM holder"""  # fmt: skip


def _pg_create_params(
    item: _CreateItem, attrs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], list[int]]:
    """The row's statement key, its fields in the batch's JSON and its advisory locks."""
    ctx, plan, probes, new_id, now = item
    columns = _columns(ctx, plan.contact_type, attrs)  # the derived columns (keys, name search keys)
    entry = _create_entry(ctx, plan, attrs, new_id, now)
    row: dict[str, Any] = {
        **columns, "id": new_id, "t": ctx.tenant_id, "ct": plan.contact_type, "key": plan.key, "attrs": attrs,
        "prefs": plan.prefs, "source": plan.source, "store": plan.store, "approved": plan.approved, "now": now,
        **_entry_fields(entry),
    }  # fmt: skip
    locks: list[int] = []
    for i, p in enumerate(probes):
        keys = p.keys(new_id, columns)
        row[f"keys{i}"], row[f"locks{i}"] = keys, p.lock_ids(ctx.tenant_id, keys)
        locks += row[f"locks{i}"]
    key = (plan.column, tuple(p.pg_condition for p in probes), tuple(columns))
    return key, row, locks


async def _pg_write_creates(pool: AsyncpgPool, url: URL, items: list[_CreateItem]) -> list[_Row | None]:
    """A batch of creates: its statement(s); when there are several rows, every row's locks are taken first,
    sorted — by the statement itself when there is one, else in one transaction around them all. When the batch
    fails, each create is tried alone (one row cannot fail its neighbours); one that fails alone gets None (the
    routed path answers it)."""

    async def write(conn: Any) -> list[_Row | None]:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        locks: list[int] = []
        for item in items:
            attrs = dict(item.plan.attrs)
            if item.plan.generated:
                attrs["memberNumber"] = await block_number(url, item.ctx.tenant_id, conn)
            key, row, row_locks = _pg_create_params(item, attrs)
            groups.setdefault(key, []).append(row)
            locks += row_locks
        found: dict[uuid.UUID, _Row] = {}
        if len(items) == 1:  # alone: its own transaction (the row's question takes its locks, sorted)
            found.update(await _pg_create_group(conn, *next(iter(groups.items()))))
        elif len(groups) == 1:  # one statement, its own transaction: it takes every row's locks first, sorted
            found.update(await _pg_create_group(conn, *next(iter(groups.items())), sorted(set(locks))))
        else:
            async with conn.transaction():
                await conn.execute(_PG_LOCK_ALL, sorted(set(locks)))
                for key, rows in groups.items():
                    found.update(await _pg_create_group(conn, key, rows))
        return [found.get(item.new_id) for item in items]

    written = await _on_lane(pool, "create", write)
    if written is not None:
        return written
    if len(items) == 1:
        return [None]
    return [(await _pg_write_creates(pool, url, [item]))[0] for item in items]


async def _pg_create_group(
    conn: Any, key: tuple[Any, ...], rows: list[dict[str, Any]], locks: list[int] | None = None
) -> dict[uuid.UUID, _Row]:
    """One statement's rows; with ``locks``, the statement takes them first (a batch alone in its transaction)."""
    locked = locks is not None
    sql = _pg_creates.get((*key, locked))
    if sql is None:
        sql = _pg_creates[(*key, locked)] = _pg_create_sql(*key, locked=locked)
    records = await conn.fetch(sql, _json(rows), *([locks] if locked else []))
    return {r[0]: _pg_row(r, 2)._replace(held=r[1]) for r in records}  # by the create's new id


def pg_creates(st: AppState, pool: AsyncpgPool) -> Gather[_CreateItem, _Row | None]:
    url = st.db.engine.url
    return _gathered(st, _CREATES, lambda items: _pg_write_creates(pool, url, items))
