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
import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pydantic_core
from sqlalchemy import func, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import hooks
from ..db import Database
from ..models.receipts import assignment_shown, promotion_view
from ..observability import metrics

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
        self._views: dict[_View, list[Any]] = {}  # -> [first at, last at, times]
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def record(
        self, tenant_id: uuid.UUID, contact_id: uuid.UUID, shown: hooks.Shown, store: str | None, at: datetime
    ) -> None:
        """Called on the fetch path: no I/O, one dict update."""
        self._add((tenant_id, contact_id, store[:255] if store else None, tuple(shown)), at, at, 1)
        if len(self._views) >= self.batch:
            self._wake.set()

    def _add(self, key: _View, first: datetime, last: datetime, times: int) -> None:
        """Merge into the view already waiting with this key, or add it within the limit."""
        view = self._views.get(key)
        if view is not None:
            view[0], view[1], view[2] = min(view[0], first), max(view[1], last), view[2] + times
        elif len(self._views) < self.limit:
            self._views[key] = [first, last, times]
        else:
            self.dropped += times
            metrics.get().shown_dropped.inc(times)

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
                async with self.db.write() as conn:
                    write = _write_pg if conn.dialect.name == "postgresql" else _write_sqlite
                    written = await write(conn, views)
            except Exception:
                log.warning("receipt.shown_flush_failed views=%d", len(views), exc_info=True)
                m.shown_flush_failures.inc()
                self._keep(views)
                return 0
            m.shown_flush.observe(time.perf_counter() - started)
            m.shown_written.inc(written)
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
    document = pydantic_core.to_json(
        [[t, c, s, first, last, times, shown] for (t, c, s, shown), (first, last, times) in views.items()]
    )
    result = await conn.exec_driver_sql(_PG_WRITE, {"views": document.decode()})
    return int(result.scalar() or 0)


async def _write_sqlite(conn: AsyncConnection, views: dict[_View, list[Any]]) -> int:
    summary: dict[uuid.UUID, dict[str, Any]] = {}
    for (tenant_id, _, _, shown), (first, last, times) in views.items():
        for aid, pid in shown:
            s = summary.get(aid)
            if s is None:
                summary[aid] = {"assignment_id": aid, "tenant_id": tenant_id, "promotion_id": pid,
                                "first_shown_at": first, "last_shown_at": last, "times": times}  # fmt: skip
            else:
                s["first_shown_at"] = min(s["first_shown_at"], first)
                s["last_shown_at"] = max(s["last_shown_at"], last)
                s["times"] += times
    await conn.execute(
        insert(promotion_view),
        [
            {"tenant_id": t, "contact_id": c, "store_external_id": s, "at": first, "last_at": last, "times": n,
             "assignment_ids": [aid for aid, _ in shown]}
            for (t, c, s, shown), (first, last, n) in views.items()
        ],
    )  # fmt: skip
    stmt = sqlite.insert(assignment_shown)
    stmt = stmt.on_conflict_do_update(
        index_elements=[assignment_shown.c.assignment_id],
        set_={
            "first_shown_at": func.min(assignment_shown.c.first_shown_at, stmt.excluded.first_shown_at),
            "last_shown_at": func.max(assignment_shown.c.last_shown_at, stmt.excluded.last_shown_at),
            "times": assignment_shown.c.times + stmt.excluded.times,
        },
    )
    await conn.execute(stmt, [summary[aid] for aid in sorted(summary)])
    return len(views)


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
