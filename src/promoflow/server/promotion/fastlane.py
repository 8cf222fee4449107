"""The fast path of the two hottest requests of a POS fleet — fetching a contact's promotions and redeeming one —
answered with one statement each on either database.

These are route-level fast handlers (`http.edge.fast_path`): the caller is already authorised and rate-limited
once, by the route; a handler answers the plain form of its request, or declines (None) and the routed handler
answers, with the same tenant context. The handlers are the same for both databases; a `Lane` runs their
statements — the rule's own statements compiled to the database's text (`statements.PG_FETCH`/`PG_REDEEM`,
`statements.SQLITE_FETCH`/`SQLITE_REDEEM`):

- PostgreSQL (`PgLane`, here): one statement on a pooled asyncpg connection (no BEGIN/COMMIT round trips, no ORM
  layer, prepared once per connection); the redeem is UPDATE … RETURNING feeding the INSERT of the redemption row
  in a CTE, for the redeems of concurrent requests at once (`kit.gather`: group commit — each line still the
  rule's conditional write, so exactly once holds);
- SQLite (`sqlitelane.SqliteLane`): raw `sqlite3` connections, reads in parallel threads, one writer thread that
  group-commits concurrent redeems (each its own conditional UPDATE, whose RETURNING row decides).

Either way the redeem is the same conditional write as every other path, so it stays exactly-once; a refused
redeem is explained here by the rule's explanation (`redemption.refusal`), so it is neither authorised nor tried
twice. The promotion's presentation (immutable once activated) is rendered by the presenter and cached. Declined:
an Idempotency-Key, extension fields or a body that is not plain, a query parameter other than the channel, an id
that is not a GUID, and on the contact-scoped path an id that names no assignment (the routed path resolves a
definition id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from operator import itemgetter
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

import asyncpg
import psycopg
import pydantic_core
from asyncpg.pgproto.pgproto import UUID as _PgUUID
from sqlalchemy.engine import make_url
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ...kit.gather import Gather, first_of_each
from ...kit.guid import parse_guid
from ...wire.engage import ChannelType
from ..contact.errors import ContactNotFoundError
from ..db import PG_CONNECT_TIMEOUT
from ..exceptions import ServiceUnavailableError
from ..hooks import fire_promotions_shown
from ..http.edge import AppState, FastHandler, json_bytes, json_response, state_of
from ..tenant.service import TenantContext
from . import presenter
from .domain import PromotionFace
from .redemption import When, explain, refusal
from .rules import CHANNEL_BITS
from .statements import PG_FETCH, PG_REDEEM

log = logging.getLogger("promoflow.api")

POOL = "fastlane"  # the PostgreSQL pool (the receipts' quick path uses it too)
LANE = "fastlane.lane"  # the database side of these handlers (`Lane`)
ANSWERED = "fastlane_answered"  # how many requests the fast path answered (tests compare the two paths)
_CONTACT_SQL = "SELECT 1 FROM contact WHERE id = $1 AND tenant_id = $2"
_PROMOTION_SQL = """
SELECT id, external_id, name, heading, description, image_url, link, channels
FROM promotion WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND activated_at IS NOT NULL
"""

# An assignment as the fetch lists it: (assignment id, promotion id, valid from, valid to).
Row = tuple[Any, Any, datetime, datetime | None]
# A redeemed assignment: (promotion id, valid from, valid to).
Won = tuple[Any, datetime, datetime | None]
_RedeemItem = tuple[
    uuid.UUID, uuid.UUID, uuid.UUID | None, ChannelType, datetime
]  # assignment, tenant, contact, …
T = TypeVar("T")
Faces = dict[uuid.UUID, dict[str, Any]]


class LaneUnavailable(Exception):
    """A read the lane could not do: the handler declines and the routed path answers."""


class Lane(Protocol):
    """The database side of the fast handlers. ``fetch`` answers the rows the rule shows (raising
    `ContactNotFoundError` when there are none and no such contact) with the faces of their promotions, or raises
    `LaneUnavailable`; ``redeem`` runs the rule's conditional write and answers the redeemed row with its face, or
    None when it changed nothing, or raises `ServiceUnavailableError` (it may or may not have committed)."""

    async def fetch(
        self, ctx: TenantContext, contact_id: uuid.UUID, bit: int, now: datetime
    ) -> tuple[list[Row], Faces]: ...

    async def redeem(
        self, ctx: TenantContext, assignment_id: uuid.UUID, contact_id: uuid.UUID | None, channel: ChannelType,
        now: datetime,
    ) -> tuple[Won, Faces] | None: ...  # fmt: skip

    async def close(self) -> None: ...


# Per-process cache of each promotion's face as the wire shows it. Once activated, a promotion's name and
# presentation change only by a promotion file's createOrUpdate (transfer): a process shows such a change within
# FACE_SECONDS.
FACE_SECONDS = 5.0
_faces: dict[tuple[uuid.UUID, str], tuple[dict[str, Any], float]] = {}


def cached_faces(ids: Iterable[uuid.UUID], currency: str) -> tuple[Faces, list[uuid.UUID]]:
    """The faces cached for ``ids``, and the ids that must be read."""
    out = {}
    missing = []
    now = time.monotonic()
    for pid in ids:
        cached = _faces.get((pid, currency))
        if cached is None or cached[1] < now:
            missing.append(pid)
        else:
            out[pid] = cached[0]
    return out, missing


def remember_faces(faces: Iterable[PromotionFace], currency: str, into: Faces) -> None:
    """Render promotion faces into ``into`` and the cache."""
    expires = time.monotonic() + FACE_SECONDS
    for face in faces:
        part = presenter.face(face, currency)
        if len(_faces) > 50_000:
            _faces.clear()
        into[face.promotion_id] = part
        _faces[(face.promotion_id, currency)] = (part, expires)


class PgPool:
    """A small pool of autocommit psycopg connections (one statement each: no BEGIN/COMMIT round trips), opened as
    needed: the receipts' quick path runs on it (the contacts' run on the lane's asyncpg pool, `asyncpg_pool`)."""

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

    def usage(self) -> tuple[int, int, int]:
        """(in use, idle, capacity), for the pool gauges."""
        idle = self._idle.qsize()
        return max(0, self._open - idle), idle, self.size

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()


# What a lane's connection may fail with: the server's errors, the driver's, the network's. A connection whose
# backend was terminated while it sat idle (a restart, `pg_terminate_backend`) can fail its next statement with
# `InternalClientError` ("another operation is in progress": the server's goodbye half read) rather than a
# connection error.
_FAILED = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
LANE_ERRORS = _FAILED  # (for the other quick paths on the lane's pool)


class AsyncpgPool:
    """The lane's connections: asyncpg, each statement its own transaction (no BEGIN/COMMIT round trips), each
    prepared once per connection (asyncpg's statement cache). Opened as needed, up to ``size``.

    An asyncpg connection belongs to the event loop it was opened on: served on another loop (a test client may
    start the app on one and send requests on others), the pool starts over there and drops the old loop's
    connections."""

    def __init__(self, url: str, size: int) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.LifoQueue[asyncpg.Connection] = asyncio.LifoQueue()
        self._mine: set[asyncpg.Connection] = set()
        self._opening = 0

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().terminate()
        self._loop, self._idle, self._mine, self._opening = loop, asyncio.LifoQueue(), set(), 0

    async def acquire(self) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._serve(loop)
        while not self._idle.empty():
            idle = self._idle.get_nowait()  # (what ``get`` would answer, without its coroutine)
            if not idle.is_closed():
                return idle
            self._mine.discard(idle)  # closed while idle (the server went away): not handed out
        if len(self._mine) + self._opening < self.size:
            self._opening += 1
            try:
                conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=PG_CONNECT_TIMEOUT)
            finally:
                if loop is self._loop:
                    self._opening -= 1
            if loop is self._loop:  # (else the pool started over elsewhere: this request's only)
                self._mine.add(conn)
            return conn
        return await self._idle.get()

    def release(self, conn: asyncpg.Connection, broken: bool = False) -> None:
        if broken or conn.is_closed() or conn not in self._mine:
            self._mine.discard(conn)
            conn.terminate()
            return
        self._idle.put_nowait(conn)

    def usage(self) -> tuple[int, int, int]:
        """(in use, idle, capacity), for the pool gauges."""
        idle = self._idle.qsize()
        return len(self._mine) - idle, idle, self.size

    async def close(self) -> None:
        same = self._loop is asyncio.get_running_loop()
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if same:
                await conn.close()
            else:
                conn.terminate()
        self._mine = set()


class PgLane:
    """PostgreSQL: one statement per request on a pooled asyncpg connection (`AsyncpgPool`)."""

    def __init__(self, pool: AsyncpgPool) -> None:
        self.pool = pool
        self._redeems: Gather[_RedeemItem, Won | None] = Gather(self._redeem_many, at_once=2)

    async def _faces(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, currency: str, ids: Iterable[uuid.UUID]
    ) -> Faces:
        out, missing = cached_faces(ids, currency)
        if missing:
            rows = await conn.fetch(_PROMOTION_SQL, tenant_id, missing)
            faces = (
                PromotionFace(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7]))) for r in rows
            )  # jsonb: text
            remember_faces(faces, currency, out)
        return out

    async def fetch(
        self, ctx: TenantContext, contact_id: uuid.UUID, bit: int, now: datetime
    ) -> tuple[list[Row], Faces]:
        try:
            conn = await self.pool.acquire()
        except _FAILED as exc:
            log.warning("fastlane.connect_failed", exc_info=True)
            raise LaneUnavailable from exc
        broken = False
        try:
            stmt = PG_FETCH[bool(bit)]
            rows: list[Any] = await conn.fetch(
                stmt.sql, *stmt.args(c=contact_id, t=ctx.tenant_id, now=now, bit=bit)
            )
            if not rows and await conn.fetchval(_CONTACT_SQL, contact_id, ctx.tenant_id) is None:
                raise ContactNotFoundError(f"contact {contact_id} not found")
            return rows, await self._faces(conn, ctx.tenant_id, ctx.currency, {r[1] for r in rows})
        except _FAILED as exc:
            broken = True
            log.warning("fastlane.fetch_failed", exc_info=True)
            raise LaneUnavailable from exc  # a read: the routed path may simply try again
        finally:
            self.pool.release(conn, broken)

    async def redeem(
        self, ctx: TenantContext, assignment_id: uuid.UUID, contact_id: uuid.UUID | None, channel: ChannelType,
        now: datetime,
    ) -> tuple[Won, Faces] | None:  # fmt: skip
        """The redeem, gathered with the redeems of concurrent requests (`kit.gather`): a lone redeem is one
        statement at once; those that arrive while two batches are in flight go together in the next, one
        statement and one commit for all (`statements.PG_REDEEM`: each line the rule's conditional write)."""
        won = await self._redeems((assignment_id, ctx.tenant_id, contact_id, channel, now))
        if won is None:
            return None
        faces, missing = cached_faces((won[0],), ctx.currency)
        if missing:
            faces = await self._on_pool(
                lambda conn: self._faces(conn, ctx.tenant_id, ctx.currency, missing), "faces"
            )
        return won, faces

    async def _on_pool(self, work: Callable[[asyncpg.Connection], Awaitable[T]], what: str) -> T:
        try:
            conn = await self.pool.acquire()
        except _FAILED as exc:
            log.warning("fastlane.connect_failed", exc_info=True)
            raise ServiceUnavailableError("the database did not answer; retry", retry_after=1) from exc
        broken = False
        try:
            return await work(conn)
        except _FAILED as exc:
            broken = True
            log.warning("fastlane.%s_failed", what, exc_info=True)
            # A redeem may or may not have committed: answer "retry" rather than guess.
            raise ServiceUnavailableError("the database did not answer; retry with the same request", retry_after=1) from exc  # fmt: skip
        finally:
            self.pool.release(conn, broken)

    async def _redeem_many(self, items: list[_RedeemItem]) -> list[Won | None]:
        """A batch of redeems: one statement per round, each round naming an assignment once (a second redeem of
        the same assignment in the batch goes in the next round, and finds it redeemed as it would alone)."""

        async def write(conn: asyncpg.Connection) -> list[Won | None]:
            done: list[Won | None] = [None] * len(items)
            todo = list(range(len(items)))
            while todo:
                going, todo = first_of_each(todo, lambda i: items[i][0])
                # In the order of the assignments' ids: every batch locks the rows it updates in one order, so
                # two batches that share assignments never wait on each other in a cycle.
                lines = [
                    [aid, t, contact, ch.value, CHANNEL_BITS[ch], now]
                    for aid, t, contact, ch, now in sorted(
                        (items[i] for i in going.values()), key=itemgetter(0)
                    )
                ]
                for row in await conn.fetch(PG_REDEEM.sql, *PG_REDEEM.args(lines=json_bytes(lines).decode())):
                    done[going[row[0]]] = (row[1], row[2], row[3])
            return done

        return await self._on_pool(write, "redeem")

    async def close(self) -> None:
        await self.pool.close()


def _answered(st: AppState) -> None:
    st.extras[ANSWERED] = st.extras.get(ANSWERED, 0) + 1


_CHANNELS = {c.value: c for c in ChannelType}


def _query(scope: Scope) -> dict[str, str]:
    """The request's query parameters as Starlette's ``query_params`` reads them (the last of each name), without
    building its multi-dict: text without escapes splits as it stands."""
    text: str = scope["query_string"].decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return dict(piece.partition("=")[::2] for piece in text.split("&") if piece)


def _header(scope: Scope, name: bytes) -> str | None:
    """The request's first header ``name`` (lowercase), as Starlette's ``headers.get`` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def _guid(text: str) -> uuid.UUID | None:
    """`parse_guid` of an id in the path: the canonical form (36 characters, dashes where they go) parsed by
    asyncpg's UUID (a `uuid.UUID` whose parsing and text are done in C, ~10x faster, and which asyncpg sends as it
    is); anything it refuses, and every other form, as `parse_guid` reads it."""
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        try:
            return _PgUUID(text)  # type: ignore[no-any-return]
        except ValueError:
            pass  # (not all hex: `parse_guid` decides)
    return parse_guid(text)


def _channel(value: str | None) -> ChannelType | bool | None:
    """The channel filter's value; None for no filter, False for one the routed path must refuse."""
    if value in (None, ""):
        return None
    return _CHANNELS.get(str(value).strip().upper(), False)


# -------------------------------------------------------------------------------------------------- fetch


def fetch(*, v3: bool) -> FastHandler:
    """`GET /api/v2/contacts/{id}/promotions` (v3: `GET /api/v3/promotion-assignments?contactId=`)."""
    allowed = {"redemptionChannelType", "contactId"} if v3 else {"redemptionChannelType"}

    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        st = state_of(request)
        lane: Lane | None = st.extras.get(LANE)
        scope = request.scope
        query = _query(scope)
        if lane is None or set(query) - allowed:
            return None
        contact_id = _guid(query.get("contactId", "") if v3 else request.path_params["contact_id"])
        channel = _channel(query.get("redemptionChannelType") or _header(scope, b"redemptionchanneltype"))
        if contact_id is None or channel is False:
            return None
        bit = 0 if channel is None else CHANNEL_BITS[channel]  # type: ignore[index]
        now = st.clock.now()
        try:
            rows, faces = await lane.fetch(ctx, contact_id, bit, now)
        except LaneUnavailable:
            return None
        tz = ctx.tz
        shown = [(r[0], r[1]) for r in rows if r[1] in faces]
        # The answer as `presenter.item_of` writes it, each face's JSON written once (`presenter.face_json`).
        body = b",".join([
            presenter.unredeemed_json(r[0], presenter.face_json(r[1], faces[r[1]]), r[2], r[3], tz, v3)
            for r in rows if r[1] in faces
        ])  # fmt: skip
        _answered(st)
        await fire_promotions_shown(st, ctx, contact_id, shown, _header(scope, b"storeexternalid"), now)
        return json_response(b"[" + body + b"]", 200)

    return handler


# ------------------------------------------------------------------------------------------------- redeem


# The answers of `plain_channel` for the short bodies seen recently: a fleet's tills send the same few.
_PLAIN: dict[bytes, ChannelType | None] = {}


def plain_channel(body: bytes) -> ChannelType | None:
    """The channel of a plain redeem body (`{"redemptionChannel": X}`, `"X"`, `null` or empty); None for anything
    else (extension fields, a bad channel, a body that is not JSON), which the routed path answers."""
    if len(body) > 64:
        return _plain_channel(body)
    try:
        return _PLAIN[body]
    except KeyError:
        if len(_PLAIN) >= 256:
            _PLAIN.clear()
        channel = _PLAIN[body] = _plain_channel(body)
        return channel


def _plain_channel(body: bytes) -> ChannelType | None:
    text = body.strip()
    if not text:
        return ChannelType.OTHER
    try:
        data = pydantic_core.from_json(text)  # UTF-8 only: anything else is the routed path's to read
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
    channel = _channel(data)
    return channel if isinstance(channel, ChannelType) else None


def redeem(*, contact_scoped: bool, v3: bool) -> FastHandler:
    """The three redeem paths, at the server's clock, with a plain body and no Idempotency-Key."""

    async def handler(request: Request, ctx: TenantContext) -> Response | None:
        st = state_of(request)
        lane: Lane | None = st.extras.get(LANE)
        if lane is None or b"idempotency-key" in dict(request.scope["headers"]):
            return None
        channel = plain_channel(await request.body())
        params = request.path_params
        contact_id = _guid(params["contact_id"]) if contact_scoped else None
        assignment_id = _guid(params["promotion_id" if not v3 else "assignment_id"])
        if channel is None or assignment_id is None or (contact_scoped and contact_id is None):
            return None
        now = st.clock.now()
        won = await lane.redeem(ctx, assignment_id, contact_id, channel, now)
        if won is None:
            async with st.db.read() as rconn:
                found = await explain(rconn, ctx, at=now, channel=channel, assignment_id=assignment_id,
                                      contact_id=contact_id)  # fmt: skip
                if not found and contact_scoped:
                    return None  # maybe a definition id, which the routed path resolves for the contact
                error = await refusal(
                    rconn, ctx, assignment_id, When.server(now), channel, contact_id, found=found
                )
            _answered(st)
            raise error
        (promotion_id, valid_from, valid_to), faces = won
        _answered(st)
        return json_response(
            json_bytes(
                presenter.item_of(assignment_id, faces[promotion_id], valid_from, valid_to, now, ctx.tz, v3)
            ),
            200,
        )

    return handler


LaneFactory = Callable[[AppState], Lane | None]


def asyncpg_pool(st: AppState) -> AsyncpgPool | None:
    """The PostgreSQL lane's asyncpg pool, for other quick paths' one-statement writes (the contacts'); None
    without one."""
    lane = st.extras.get(LANE)
    return lane.pool if isinstance(lane, PgLane) else None


async def start(st: AppState) -> None:
    if not st.settings.fast_lane:
        return
    if st.db.sqlite:
        from .sqlitelane import SqliteLane

        lane = SqliteLane.open(st.db)
        if lane is not None:
            st.extras[LANE] = lane
        return
    url, size = st.settings.resolved_database_url(), st.settings.db_pool_size
    st.extras[POOL] = PgPool(url, size)
    st.extras[LANE] = PgLane(AsyncpgPool(url, size))


async def stop(st: AppState) -> None:
    pool: PgPool | None = st.extras.pop(POOL, None)
    if pool is not None:
        await pool.close()
    lane: Lane | None = st.extras.pop(LANE, None)
    if lane is not None:
        await lane.close()
