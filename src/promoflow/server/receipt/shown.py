"""The ledger's 'shown' events, recorded without a write on the fetch path.

Fetching a contact's promotions is the hottest request of the server, so it only appends to an in-process buffer
(via the `promotions_shown` hook). A background task writes the buffer in batches every second (or sooner when it
grows), at shutdown, and right before a report or ledger read in the same process. Each answered fetch becomes
one `promotion_view` row holding the ids of the assignments it showed (repeats of the same answer to the same
contact in the same store within a batch become one row with a count), and the per-assignment `assignment_shown`
summary (what the reports count) is upserted in the same transaction. Neither table has foreign keys (see the
models): at fleet load a foreign-key check per shown assignment cost more than the fetch itself.

Best effort, by design: events still in the buffer when a process crashes are lost (at most about a second of
fetches), and several API processes each flush their own buffer, so a report served by one process may miss the
last second of another's fetches. Redemptions, receipts and reactivations are never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pydantic_core
from asyncpg.pgproto.pgproto import UUID as _PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import hooks
from ..db import Database, connect_sqlite, sqlite_file, wal_checkpoint
from ..observability import metrics
from ..promotion.statements import utc_text

log = logging.getLogger("promoflow.receipts")

if TYPE_CHECKING:
    from ..http.edge import AppState

STATE_KEY = "receipt.shown"
# tenant, contact, store, the (assignment, promotion) pairs shown
_View = tuple[uuid.UUID, uuid.UUID, str | None, tuple[tuple[uuid.UUID, uuid.UUID], ...]]


class ShownBuffer:
    """Views waiting to be written. Bounded (``limit`` distinct views, ~1.5 KB each): past it, new views are
    counted in ``dropped`` and not kept. It only fills when writes fail while fetches succeed — when the database
    is down, fetches fail too."""

    def __init__(
        self, db: Database, *, interval: float = 1.0, batch: int = 2_000, limit: int = 50_000
    ) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch
        self.limit = limit
        self.dropped = 0
        self._unchecked = 0  # views written on SQLite since the last checkpoint
        self._views: dict[_View, list[Any]] = {}  # -> [first at, last at, times]
        self._tenants: dict[int, tuple[uuid.UUID, uuid.UUID]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def record(
        self, tenant_id: uuid.UUID, contact_id: uuid.UUID, shown: hooks.Shown, store: str | None, at: datetime
    ) -> None:
        """Called on the fetch path: no I/O, one dict update (the key hashed once)."""
        self._add(
            (self._tenant(tenant_id), contact_id, store[:255] if store else None, tuple(shown)), at, at, 1
        )
        if len(self._views) >= self.batch:
            self._wake.set()

    def _tenant(self, tenant_id: uuid.UUID) -> uuid.UUID:
        """``tenant_id`` as asyncpg's UUID (equal, same hash): `uuid.UUID` hashes in Python (~1-2 µs, twice per
        view), asyncpg's in C. A process serves the same few tenant objects (the key cache's), so kept by
        identity."""
        known = self._tenants.get(id(tenant_id))
        if known is not None and known[0] is tenant_id:
            return known[1]
        if len(self._tenants) >= 1_024:
            self._tenants.clear()
        fast = _PgUUID(str(tenant_id)) if type(tenant_id) is uuid.UUID else tenant_id
        self._tenants[id(tenant_id)] = (tenant_id, fast)  # (holding the object: its id is not reused)
        return fast

    def _add(self, key: _View, first: datetime, last: datetime, times: int) -> None:
        """Merge into the view already waiting with this key, or add it within the limit (the key is hashed once:
        a view's key holds a dozen ids)."""
        views = self._views
        before = len(views)
        view = views.setdefault(key, [first, last, 0])
        if len(views) > before and before >= self.limit:
            del views[key]
            self.dropped += times
            metrics.get().shown_dropped.inc(times)
            return
        if first < view[0]:
            view[0] = first
        if last > view[1]:
            view[1] = last
        view[2] += times

    def __len__(self) -> int:
        return len(self._views)

    async def flush(self) -> int:
        """Write everything recorded so far; returns the number of views written."""
        async with self._lock:
            views, self._views = self._views, {}
            if not views:
                return 0
            m = metrics.get()
            started = time.perf_counter()
            try:
                if self.db.sqlite:
                    written = await self._flush_sqlite(views)
                else:
                    async with self.db.write() as conn:
                        written = await _write_pg(conn, views)
            except _Kept as kept:  # SQLite: a slice failed, it and the ones after it are kept
                log.warning(
                    "receipt.shown_flush_failed views=%d", len(views) - kept.written, exc_info=kept.__cause__
                )
                m.shown_flush_failures.inc()
                m.shown_written.inc(kept.written)
                return kept.written
            except Exception:
                log.warning("receipt.shown_flush_failed views=%d", len(views), exc_info=True)
                m.shown_flush_failures.inc()
                self._keep(views)
                return 0
            m.shown_flush.observe(time.perf_counter() - started)
            m.shown_written.inc(written)
            return written

    async def _flush_sqlite(self, views: dict[_View, list[Any]]) -> int:
        """The batch's text is built on the event loop, a slice at a time (a thread building it would hold the
        GIL against the loop for milliseconds); each slice's statements run in a transaction of their own, on a
        connection of their own in a thread, in the process's write turn like every other writer — so a redeem
        waits for at most one slice, never a whole second's batch. A slice that fails is kept with the ones after
        it (the slices before it are written). Every `SHOWN_CHECKPOINT_VIEWS` views written, the log is copied
        into the database file in a thread, outside the write turn (a checkpoint waits for no writer and no
        writer for it)."""
        path = sqlite_file(self.db.url)
        if path is None:
            raise ValueError("the 'shown' ledger needs a SQLite database file")
        written = 0
        slices = [piece async for piece in _sqlite_slices(views)]
        for i, (texts, keys) in enumerate(slices):
            try:
                async with self.db.write_turn():
                    await asyncio.to_thread(_write_sqlite, path, texts)
            except Exception as exc:
                self._keep({key: views[key] for _, rest in slices[i:] for key in rest})
                raise _Kept(written) from exc
            written += len(keys)
            self._unchecked += len(keys)
        if self._unchecked >= SHOWN_CHECKPOINT_VIEWS:
            self._unchecked = 0
            await asyncio.to_thread(_checkpoint_sqlite, path)
        return written

    def _keep(self, views: dict[_View, list[Any]]) -> None:
        """Put a batch that could not be written back with what arrived since, within the limit."""
        for key, (first, last, times) in views.items():
            self._add(key, first, last, times)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="promoflow-shown-writer")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()


# PostgreSQL: the whole batch in one set-based statement, the views travelling as one JSON document (each view
# an array: tenant, contact, store, first and last time, times, and its [assignment, promotion] pairs) that the
# database reads itself; the per-assignment summary aggregated by the statement. A busy API shows tens of
# thousands of assignments a second: psycopg's dumpers encode arrays value by value in Python (~750 bytecodes a
# view, in binary), which cost the event loop more than the fetch that showed it; pydantic-core writes the
# document in one call (~20 a view). The summary is upserted in key order, so two processes flushing at once
# cannot deadlock on each other's rows.
_PG_WRITE = """
WITH x AS MATERIALIZED (
  SELECT (e->>0)::uuid AS t, (e->>1)::uuid AS c, e->>2 AS s, (e->>3)::timestamptz AS f,
         (e->>4)::timestamptz AS l, (e->>5)::int AS n, e->6 AS shown
  FROM json_array_elements(%(views)s::json) AS e
), views AS (
  INSERT INTO promotion_view (tenant_id, contact_id, store_external_id, at, last_at, times, assignment_ids)
  SELECT t, c, s, f, l, n,
         ARRAY(SELECT (p->>0)::uuid FROM json_array_elements(x.shown) WITH ORDINALITY AS a(p, k) ORDER BY k)
  FROM x
  RETURNING 1
), summary AS (
  INSERT INTO assignment_shown (assignment_id, tenant_id, promotion_id, first_shown_at, last_shown_at, times)
  SELECT (p->>0)::uuid, x.t, (p->>1)::uuid, min(x.f), max(x.l), sum(x.n)
  FROM x, json_array_elements(x.shown) AS p
  GROUP BY 1, 2, 3 ORDER BY 1
  ON CONFLICT (assignment_id) DO UPDATE SET
    first_shown_at = least(assignment_shown.first_shown_at, excluded.first_shown_at),
    last_shown_at = greatest(assignment_shown.last_shown_at, excluded.last_shown_at),
    times = assignment_shown.times + excluded.times
)
SELECT count(*) FROM views
"""


async def _write_pg(conn: AsyncConnection, views: dict[_View, list[Any]]) -> int:
    # The ids as text first: the fast lane's are asyncpg's UUID (a subclass), which pydantic-core writes only
    # after a round of isinstance checks (~1.5 µs an id; `str` prints them in C).
    document = pydantic_core.to_json([
        [str(t), str(c), s, first, last, times, [[str(a), str(p)] for a, p in shown]]
        for (t, c, s, shown), (first, last, times) in views.items()
    ])  # fmt: skip
    result = await conn.exec_driver_sql(_PG_WRITE, {"views": document.decode()})
    return int(result.scalar() or 0)


# SQLite: the same shape — the views and their shown assignments travel as JSON texts (a slice of the batch each)
# that two statements expand (`json_each`), the summary aggregated by the statement (an assignment in two slices
# is upserted twice: the same sums). Python only turns each view into lists of texts (ids as stored: hex; times as
# stored: naive UTC text), a few microseconds a view where SQLAlchemy's executemany on the event loop cost ~100.

# Views written between two checkpoints. A checkpoint copies every page the log holds into the database file, once
# however often it was rewritten since; the summary's upserts dirty pages all over its table, and SQLite's default
# (a checkpoint in the commit that takes the log past 1,000 pages: nearly every slice) copied them again and again
# — 60 of a view's ~130 µs of writing, measured — and did it holding the write turn.
SHOWN_CHECKPOINT_VIEWS = 2_000
SQLITE_SLICE = 250  # views turned into text between two turns of the event loop (~2 ms)
_SQLITE_VIEWS = """
INSERT INTO promotion_view (tenant_id, contact_id, store_external_id, at, last_at, times, assignment_ids)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value -> 6 FROM json_each(?)
"""
_SQLITE_SUMMARY = """
INSERT INTO assignment_shown (assignment_id, tenant_id, promotion_id, first_shown_at, last_shown_at, times)
SELECT value ->> 0, value ->> 1, value ->> 2, min(value ->> 3), max(value ->> 4), sum(value ->> 5)
FROM json_each(?) GROUP BY value ->> 0 ORDER BY value ->> 0
ON CONFLICT (assignment_id) DO UPDATE SET
  first_shown_at = min(assignment_shown.first_shown_at, excluded.first_shown_at),
  last_shown_at = max(assignment_shown.last_shown_at, excluded.last_shown_at),
  times = assignment_shown.times + excluded.times
"""


class _Kept(Exception):
    """A SQLite flush stopped at a slice that failed: ``written`` views were written, the rest kept."""

    def __init__(self, written: int) -> None:
        super().__init__(written)
        self.written = written


async def _sqlite_slices(views: dict[_View, list[Any]]) -> AsyncIterator[tuple[tuple[str, str], list[_View]]]:
    """The views as JSON texts of `SQLITE_SLICE` views each — the views' and the summary's, one row per shown
    assignment (expanding the views' pairs in SQL, a nested `json_each` per view, cost the writer more than the
    lists cost here) — with the views each holds; the event loop free to serve between two."""
    batch: list[list[Any]] = []
    summary: list[list[Any]] = []
    keys: list[_View] = []
    for key, (first, last, times) in views.items():
        tenant_id, contact_id, store, shown = key
        at = utc_text(first)
        until = at if last is first else utc_text(last)
        tenant = tenant_id.hex
        aids = [aid.hex for aid, _ in shown]
        batch.append([tenant, contact_id.hex, store, at, until, times, aids])
        summary += [
            [aid, tenant, pid.hex, at, until, times] for aid, (_, pid) in zip(aids, shown, strict=True)
        ]
        keys.append(key)
        if len(batch) == SQLITE_SLICE:
            yield (json.dumps(batch), json.dumps(summary)), keys
            batch, summary, keys = [], [], []
            await asyncio.sleep(0)
    if batch:
        yield (json.dumps(batch), json.dumps(summary)), keys


def _write_sqlite(path: str, texts: tuple[str, str]) -> None:
    views, summary = texts
    conn = connect_sqlite(path, writer=True)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # `_checkpoint_sqlite`'s, outside the write turn
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SQLITE_VIEWS, (views,))
            conn.execute(_SQLITE_SUMMARY, (summary,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _checkpoint_sqlite(path: str) -> None:
    conn = connect_sqlite(path, writer=True)
    try:
        wal_checkpoint(conn)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- wiring


async def record_shown(
    state: Any, ctx: Any, contact_id: uuid.UUID, shown: hooks.Shown, store: str | None, now: datetime
) -> None:
    buffer = state.extras.get(STATE_KEY) if state is not None else None
    if buffer is not None and shown:
        buffer.record(ctx.tenant_id, contact_id, shown, store, now)


async def start_buffer(state: AppState) -> None:
    if not state.settings.record_shown:
        return
    buffer = ShownBuffer(state.db)
    state.extras[STATE_KEY] = buffer
    buffer.start()


async def stop_buffer(state: AppState) -> None:
    buffer = state.extras.pop(STATE_KEY, None)
    if buffer is not None:
        await buffer.stop()


async def flush_shown(state: AppState) -> None:
    """Before reading the ledger or a report: write what this process has buffered."""
    buffer = state.extras.get(STATE_KEY)
    if buffer is not None:
        await buffer.flush()
