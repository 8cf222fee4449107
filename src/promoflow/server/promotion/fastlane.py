"""The fast lane: the two hottest requests of a POS fleet, answered on PostgreSQL with one SQL statement each.

Fetching a contact's promotions and redeeming one are what every checkout does. On PostgreSQL this middleware
answers their plain form directly: the same authentication, rate limit and rules as the routed endpoints, but
no framework routing, one statement on a raw autocommit psycopg connection, and the promotion's presentation
rendered from a cache (kept PART_SECONDS: a promotion file may rename an active promotion). Anything else — an
Idempotency-Key, extension fields, a refusal that needs its precise error, SQLite — goes down the ordinary path,
which gives the same answers; the fast lane only ever handles the happy path. The redeem is one statement (UPDATE … RETURNING feeding the INSERT of the
redemption row in a CTE), so it stays exactly-once: the conditional UPDATE is the same as the routed path's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...kit.guid import parse_guid
from ...wire.engage import ChannelType
from ..exceptions import PromoflowError, ServiceUnavailableError
from ..hooks import fire_promotions_shown
from ..http.edge import AppState, authorize, json_bytes
from ..http.exception_handlers import error_body
from .assignment import promotion_part, render_item
from .rules import CHANNEL_BITS

log = logging.getLogger("promoflow.api")

# An active promotion's name and presentation change only by a promotion file's createOrUpdate (transfer); a
# process shows such a change within this many seconds.
PART_SECONDS = 5.0

_FETCH = re.compile(r"^/api/v2/contacts/([^/]+)/promotions$")
_REDEEM = (
    (re.compile(r"^/api/v2/contacts/([^/]+)/promotions/([^/]+)/redeem$"), False),
    (re.compile(r"^/api/v2/promotions/codes/([^/]+)/redeem$"), False),
    (re.compile(r"^/api/v3/promotion-assignments/([^/]+)/redeem$"), True),
)

_FETCH_SQL = """
SELECT a.id, a.promotion_id, a.valid_from, a.valid_to
FROM assignment a JOIN promotion p ON p.id = a.promotion_id
WHERE a.contact_id = %(c)s AND a.tenant_id = %(t)s AND a.deleted_at IS NULL AND a.redeemed_at IS NULL
  AND a.valid_from <= %(now)s AND (a.valid_to IS NULL OR a.valid_to >= %(now)s) AND p.activated_at IS NOT NULL
  {channel}
ORDER BY a.created_at, a.id
"""
_FETCH_ANY = _FETCH_SQL.format(channel="")
_FETCH_CHANNEL = _FETCH_SQL.format(channel="AND (p.channel_mask & %(bit)s) != 0")

_REDEEM_SQL = """
WITH won AS (
  UPDATE assignment SET redeemed_at = %(now)s, redeemed_channel = %(ch)s, redeemed_store = NULL,
         redeemed_receipt_id = NULL, redeemed_via = 'api', redemption_count = redemption_count + 1
  WHERE id = %(a)s AND tenant_id = %(t)s AND redeemed_at IS NULL AND deleted_at IS NULL
    AND valid_from <= %(now)s AND (valid_to IS NULL OR valid_to >= %(now)s) {contact}
    AND EXISTS (SELECT 1 FROM promotion p WHERE p.id = assignment.promotion_id
                AND (p.channel_mask = 0 OR (p.channel_mask & %(bit)s) != 0))
  RETURNING id, tenant_id, promotion_id, valid_from, valid_to, redemption_count
), rec AS (
  INSERT INTO redemption (id, tenant_id, assignment_id, seq, redeemed_at, channel, via, created_at)
  SELECT gen_random_uuid(), tenant_id, id, redemption_count, %(now)s, %(ch)s, 'api', %(now)s FROM won
)
SELECT promotion_id, valid_from, valid_to FROM won
"""
_REDEEM_ANY = _REDEEM_SQL.format(contact="")
_REDEEM_CONTACT = _REDEEM_SQL.format(contact="AND contact_id = %(c)s")

_PROMOTION_SQL = """
SELECT id AS promotion_id, external_id, name, heading, description, image_url, link, channels
FROM promotion WHERE tenant_id = %(t)s AND id = ANY(%(ids)s) AND activated_at IS NOT NULL
"""


class PgPool:
    """A small pool of autocommit psycopg connections (one statement each: no BEGIN/COMMIT round trips)."""

    def __init__(self, url: str, size: int) -> None:
        u = make_url(url).set(drivername="postgresql")
        self.conninfo = u.render_as_string(hide_password=False)
        self.size = size
        self._idle: asyncio.LifoQueue[psycopg.AsyncConnection[Any]] = asyncio.LifoQueue()
        self._open = 0
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Future[None]] = set()

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._idle.empty() and self._open < self.size:
            async with self._lock:
                if self._open < self.size:
                    self._open += 1
                    try:
                        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                    except Exception:
                        self._open -= 1
                        raise
        return await self._idle.get()

    def release(self, conn: psycopg.AsyncConnection[Any], broken: bool = False) -> None:
        if broken or conn.closed:
            self._open -= 1
            task = asyncio.ensure_future(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return
        self._idle.put_nowait(conn)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()


class FastLane:
    def __init__(self, app: ASGIApp, holder: Any) -> None:
        self.app = app
        self.holder = holder  # has .state: AppState once the app started
        self._parts: dict[tuple[uuid.UUID, str], tuple[dict[str, Any], float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st: AppState | None = getattr(self.holder, "state", None)
        if scope["type"] == "http" and st is not None and "fastlane" in st.extras:
            path: str = scope["path"]
            if scope["method"] == "GET":
                m = _FETCH.match(path)
                if m and await self._fetch(st, scope, send, m.group(1)):
                    return
            elif scope["method"] == "POST" and path.endswith("/redeem"):
                for pattern, v3 in _REDEEM:
                    m = pattern.match(path)
                    if m:
                        await self._redeem(st, scope, receive, send, m.groups(), v3)
                        return
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _headers(scope: Scope) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],  # fmt: skip
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _error(self, send: Send, exc: PromoflowError) -> None:
        status, body, headers = error_body(exc)
        await self._send(
            send, status, json_bytes(body), [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        )

    async def _parts_for(
        self, st: AppState, conn: psycopg.AsyncConnection[Any], tenant_id: uuid.UUID, currency: str,
        ids: set[uuid.UUID],
    ) -> dict[uuid.UUID, dict[str, Any]]:  # fmt: skip
        out = {}
        missing = []
        mono = time.monotonic()
        for pid in ids:
            cached = self._parts.get((pid, currency))
            if cached is None or cached[1] < mono:
                missing.append(pid)
            else:
                out[pid] = cached[0]
        if missing:
            cur = await conn.execute(_PROMOTION_SQL, {"t": tenant_id, "ids": missing})
            cur.row_factory = psycopg.rows.namedtuple_row  # type: ignore[attr-defined]
            for row in await cur.fetchall():
                part = promotion_part(row, currency)
                if len(self._parts) > 50_000:
                    self._parts.clear()
                self._parts[(row.promotion_id, currency)] = (part, mono + PART_SECONDS)
                out[row.promotion_id] = part
        return out

    # -------------------------------------------------------------------------------------------- fetch

    async def _fetch(self, st: AppState, scope: Scope, send: Send, contact_ref: str) -> bool:
        """True when answered here; False to let the routed endpoint answer (it gives the precise result)."""
        contact_id = parse_guid(contact_ref)
        query: bytes = scope.get("query_string", b"")
        headers = self._headers(scope)
        channel_value = None
        if query:
            params = dict(_pair(p) for p in query.split(b"&"))
            if set(params) - {b"redemptionChannelType"}:
                return False
            channel_value = params.get(b"redemptionChannelType", b"").decode() or None
        channel_value = channel_value or headers.get("redemptionchanneltype") or None
        bit = 0
        if channel_value is not None:
            try:
                bit = CHANNEL_BITS[ChannelType(channel_value.strip().upper())]
            except ValueError:
                return False
        if contact_id is None:
            return False
        try:
            ctx = await authorize(st, headers, (scope.get("client") or (None,))[0])
        except PromoflowError as exc:
            await self._error(send, exc)
            return True
        pool: PgPool = st.extras["fastlane"]
        now = st.clock.now()
        conn = await pool.acquire()
        broken = False
        try:
            params_sql: dict[str, Any] = {"c": contact_id, "t": ctx.tenant_id, "now": now, "bit": bit}
            cur = await conn.execute(_FETCH_CHANNEL if bit else _FETCH_ANY, params_sql)
            rows = await cur.fetchall()
            if not rows:
                return False  # no promotions, or no such contact: the routed endpoint tells which
            parts = await self._parts_for(st, conn, ctx.tenant_id, ctx.currency, {r[1] for r in rows})
        except psycopg.Error:
            broken = True
            log.warning("fastlane.fetch_failed", exc_info=True)
            return False
        finally:
            pool.release(conn, broken)
        tz = ctx.tz
        items = [render_item(r[0], parts[r[1]], r[2], r[3], None, tz, False) for r in rows if r[1] in parts]
        await self._send(send, 200, json_bytes(items))
        st.extras["fastlane_answered"] = st.extras.get("fastlane_answered", 0) + 1
        shown = [(r[0], r[1]) for r in rows if r[1] in parts]
        await fire_promotions_shown(st, ctx, contact_id, shown, headers.get("storeexternalid"), now)
        return True

    # ------------------------------------------------------------------------------------------- redeem

    async def _redeem(self, st: AppState, scope: Scope, receive: Receive, send: Send, ids: tuple[str, ...],
                      v3: bool) -> None:  # fmt: skip
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = self._headers(scope)

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def delegate() -> None:
            await self.app(scope, replay, send)

        channel = _plain_channel(body)
        contact_id = parse_guid(ids[0]) if len(ids) == 2 else None
        assignment_id = parse_guid(ids[-1])
        if (
            channel is None
            or "idempotency-key" in headers
            or assignment_id is None
            or (len(ids) == 2 and contact_id is None)
        ):
            await delegate()
            return
        try:
            ctx = await authorize(st, headers, (scope.get("client") or (None,))[0])
        except PromoflowError as exc:
            await self._error(send, exc)
            return
        pool: PgPool = st.extras["fastlane"]
        now = st.clock.now()
        conn = await pool.acquire()
        broken = False
        try:
            cur = await conn.execute(
                _REDEEM_CONTACT if contact_id else _REDEEM_ANY,
                {"now": now, "ch": channel.value, "a": assignment_id, "t": ctx.tenant_id, "c": contact_id,
                 "bit": CHANNEL_BITS[channel]},
            )  # fmt: skip
            row = await cur.fetchone()
            parts = await self._parts_for(st, conn, ctx.tenant_id, ctx.currency, {row[0]}) if row else {}
        except psycopg.Error:
            broken = True
            log.warning("fastlane.redeem_failed", exc_info=True)
            # The statement may or may not have committed: answer "retry" rather than guess.
            await self._error(send, _unavailable())
            return
        finally:
            pool.release(conn, broken)
        if row is None:
            await delegate()  # refused: the routed endpoint (which changes nothing) explains why
            return
        item = render_item(assignment_id, parts[row[0]], row[1], row[2], now, ctx.tz, v3)
        await self._send(send, 200, json_bytes(item))
        st.extras["fastlane_answered"] = st.extras.get("fastlane_answered", 0) + 1


def _pair(part: bytes) -> tuple[bytes, bytes]:
    name, _, value = part.partition(b"=")
    return name, value


def _plain_channel(body: bytes) -> ChannelType | None:
    """The channel of a plain redeem body (`{"redemptionChannel": X}`, `"X"` or empty); None for anything else."""
    text = body.strip()
    if not text:
        return ChannelType.OTHER
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        if set(data) - {"redemptionChannel"}:
            return None
        data = data.get("redemptionChannel")
    if data is None:
        return ChannelType.OTHER
    if not isinstance(data, str):
        return None
    try:
        return ChannelType(data.strip().upper())
    except ValueError:
        return None


def _unavailable() -> PromoflowError:

    return ServiceUnavailableError("the database did not answer; retry with the same request", retry_after=1)


Starter = Callable[[AppState], Awaitable[None]]


async def start(st: AppState) -> None:
    if not st.db.sqlite and st.settings.fast_lane:
        st.extras["fastlane"] = PgPool(st.settings.resolved_database_url(), st.settings.db_pool_size)


async def stop(st: AppState) -> None:
    pool = st.extras.pop("fastlane", None)
    if pool is not None:
        await pool.close()
