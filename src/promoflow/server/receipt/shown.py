"""The ledger's 'shown' events, recorded without a write on the fetch path.

Fetching a contact's promotions is the hottest request of the server, so it only appends to an in-process buffer
(via the `promotions_shown` hook). A background task writes the buffer in batches every second (or sooner when it
grows), at shutdown, and right before a report or ledger read in the same process. Repeated fetches of one
assignment in one store within a batch become one `assignment_event` row with a count, and the per-assignment
`assignment_shown` summary (what the reports count) is upserted in the same transaction.

Best effort, by design: events still in the buffer when a process crashes are lost (at most about a second of
fetches), and several API processes each flush their own buffer, so a report served by one process may miss the
last second of another's fetches. Redemptions, receipts and reactivations are never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.timeutil import iso
from .. import features, hooks
from ..db import Database
from ..edge import AppState
from ..models import assignment, assignment_event
from ..models.receipts import assignment_shown

log = logging.getLogger("promoflow.receipts")

STATE_KEY = "receipt.shown"
_Key = tuple[uuid.UUID, uuid.UUID, str | None]  # tenant, assignment, store


class ShownBuffer:
    def __init__(
        self, db: Database, *, interval: float = 1.0, batch: int = 1_000, limit: int = 500_000
    ) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch
        self.limit = limit
        self.dropped = 0
        self._pending: dict[_Key, list[Any]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def record(
        self, tenant_id: uuid.UUID, assignment_ids: list[uuid.UUID], store: str | None, at: datetime
    ) -> None:
        """Called on the fetch path: no I/O, a dict update per assignment."""
        pending = self._pending
        store = store[:255] if store else None
        for aid in assignment_ids:
            entry = pending.get((tenant_id, aid, store))
            if entry is not None:
                entry[1] = at
                entry[2] += 1
            elif len(pending) < self.limit:
                pending[(tenant_id, aid, store)] = [at, at, 1]
            else:
                self.dropped += 1
        if len(pending) >= self.batch:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write everything recorded so far; returns the number of events written."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            if not pending:
                return 0
            try:
                async with self.db.write() as conn:
                    return await _write(conn, pending)
            except Exception:
                log.warning("receipt.shown_flush_failed events=%d", len(pending), exc_info=True)
                for key, entry in pending.items():  # keep them for the next attempt, within the limit
                    if len(self._pending) < self.limit:
                        self._pending.setdefault(key, entry)
                return 0

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


# PostgreSQL: the whole batch in one set-based statement, the rows travelling as arrays. A busy API shows tens
# of thousands of assignments a second; building per-row parameters in Python for that would stall the event loop
# (tail latency) and cost as much CPU as the fetches themselves.
_PG_WRITE = """
WITH input AS (
  SELECT * FROM unnest(%(t)s::uuid[], %(a)s::uuid[], %(s)s::text[], %(f)s::timestamptz[], %(l)s::timestamptz[],
                       %(li)s::text[], %(n)s::int[])
         AS x(tenant_id, assignment_id, store, first_at, last_at, last_iso, times)
), known AS (
  SELECT x.*, a.promotion_id FROM input x JOIN assignment a ON a.id = x.assignment_id AND a.tenant_id = x.tenant_id
), events AS (
  INSERT INTO assignment_event (tenant_id, assignment_id, kind, at, store_external_id, detail)
  SELECT tenant_id, assignment_id, 'shown', first_at, store, jsonb_build_object('count', times, 'lastAt', last_iso)
  FROM known
  RETURNING 1
), summary AS (
  INSERT INTO assignment_shown (assignment_id, tenant_id, promotion_id, first_shown_at, last_shown_at, times)
  SELECT assignment_id, (array_agg(tenant_id))[1], (array_agg(promotion_id))[1], min(first_at), max(last_at),
         sum(times)
  FROM known GROUP BY assignment_id ORDER BY assignment_id
  ON CONFLICT (assignment_id) DO UPDATE SET
    first_shown_at = least(assignment_shown.first_shown_at, excluded.first_shown_at),
    last_shown_at = greatest(assignment_shown.last_shown_at, excluded.last_shown_at),
    times = assignment_shown.times + excluded.times
)
SELECT count(*) FROM events
"""


async def _write_pg(conn: AsyncConnection, pending: dict[_Key, list[Any]]) -> int:
    # Small, frequent batches (the buffer wakes the writer at 1,000 entries) spread the database work evenly
    # instead of a burst a second that the fetches queued behind would feel as tail latency.
    cols: dict[str, list[Any]] = {"t": [], "a": [], "s": [], "f": [], "l": [], "li": [], "n": []}
    for (tenant_id, aid, store), (first, last, count) in pending.items():
        cols["t"].append(tenant_id)
        cols["a"].append(aid)
        cols["s"].append(store)
        cols["f"].append(first)
        cols["l"].append(last)
        cols["li"].append(iso(last))
        cols["n"].append(count)
    result = await conn.exec_driver_sql(_PG_WRITE, cols)
    return int(result.scalar() or 0)


async def _write(conn: AsyncConnection, pending: dict[_Key, list[Any]]) -> int:
    if conn.dialect.name == "postgresql":
        return await _write_pg(conn, pending)
    ids = list({aid for _, aid, _ in pending})
    known: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]] = {}
    for i in range(0, len(ids), 500):
        found = await conn.execute(
            select(assignment.c.id, assignment.c.tenant_id, assignment.c.promotion_id).where(
                assignment.c.id.in_(ids[i : i + 500])
            )
        )
        known.update({r.id: (r.tenant_id, r.promotion_id) for r in found})
    events = []
    summary: dict[uuid.UUID, dict[str, Any]] = {}
    for (tenant_id, aid, store), (first, last, count) in pending.items():
        owner = known.get(aid)
        if owner is None or owner[0] != tenant_id:
            continue  # deleted since it was fetched
        events.append(
            {
                "tenant_id": tenant_id,
                "assignment_id": aid,
                "kind": "shown",
                "at": first,
                "store_external_id": store,
                "detail": {"count": count, "lastAt": iso(last)},
            }
        )
        s = summary.get(aid)
        if s is None:
            summary[aid] = {
                "assignment_id": aid,
                "tenant_id": tenant_id,
                "promotion_id": owner[1],
                "first_shown_at": first,
                "last_shown_at": last,
                "times": count,
            }
        else:
            s["first_shown_at"] = min(s["first_shown_at"], first)
            s["last_shown_at"] = max(s["last_shown_at"], last)
            s["times"] += count
    if not events:
        return 0
    await conn.execute(insert(assignment_event), events)
    # Upserted in key order, so two processes flushing at once cannot deadlock on each other's rows.
    ordered = [summary[k] for k in sorted(summary)]
    stmt: Any
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(assignment_shown)
        stmt = pg.on_conflict_do_update(
            index_elements=[assignment_shown.c.assignment_id],
            set_={
                "first_shown_at": func.least(assignment_shown.c.first_shown_at, pg.excluded.first_shown_at),
                "last_shown_at": func.greatest(assignment_shown.c.last_shown_at, pg.excluded.last_shown_at),
                "times": assignment_shown.c.times + pg.excluded.times,
            },
        )
    else:
        lite = sqlite.insert(assignment_shown)
        stmt = lite.on_conflict_do_update(
            index_elements=[assignment_shown.c.assignment_id],
            set_={
                "first_shown_at": func.min(assignment_shown.c.first_shown_at, lite.excluded.first_shown_at),
                "last_shown_at": func.max(assignment_shown.c.last_shown_at, lite.excluded.last_shown_at),
                "times": assignment_shown.c.times + lite.excluded.times,
            },
        )
    await conn.execute(stmt, ordered)
    return len(events)


# ------------------------------------------------------------------------------------------- wiring


async def _on_shown(
    state: Any,
    ctx: Any,
    _contact_id: uuid.UUID,
    assignment_ids: list[uuid.UUID],
    store: str | None,
    now: datetime,
) -> None:
    buffer = state.extras.get(STATE_KEY) if state is not None else None
    if buffer is not None and assignment_ids:
        buffer.record(ctx.tenant_id, assignment_ids, store, now)


async def _start(state: AppState) -> None:
    if not state.settings.record_shown:
        return
    buffer = ShownBuffer(state.db)
    state.extras[STATE_KEY] = buffer
    buffer.start()


async def _stop(state: AppState) -> None:
    buffer = state.extras.pop(STATE_KEY, None)
    if buffer is not None:
        await buffer.stop()


async def flush_shown(state: AppState) -> None:
    """Before reading the ledger or a report: write what this process has buffered."""
    buffer = state.extras.get(STATE_KEY)
    if buffer is not None:
        await buffer.flush()


def register() -> None:
    if _on_shown not in hooks.promotions_shown:
        hooks.promotions_shown.append(_on_shown)
    if _start not in features.STARTUP:
        features.STARTUP.append(_start)
        features.SHUTDOWN.append(_stop)
