"""The 'shown' writer on its own, on a real database: one promotion_view row per distinct answer in a batch (with its
count), the per-assignment summary accumulated across views and batches, a failed write kept for the next one, and
the memory bound."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from promoflow.server.db import Database, turn_of
from promoflow.server.models.receipts import assignment_shown, promotion_view
from promoflow.server.receipt.shown import SQLITE_SLICE, ShownBuffer
from tests.conftest import START


async def _rows(db: Database, tenant_id: uuid.UUID) -> tuple[list[Any], dict[uuid.UUID, Any]]:
    async with db.read() as conn:
        views = (
            await conn.execute(
                select(promotion_view)
                .where(promotion_view.c.tenant_id == tenant_id)
                .order_by(promotion_view.c.id)
            )
        ).all()
        shown = (
            await conn.execute(select(assignment_shown).where(assignment_shown.c.tenant_id == tenant_id))
        ).all()
    return list(views), {r.assignment_id: r for r in shown}


def test_views_and_summary_accumulate_across_answers_and_batches(db_url: str) -> None:
    t, c1, c2, p1, p2 = (uuid.uuid4() for _ in range(5))
    a1, a2, a3 = sorted(uuid.uuid4() for _ in range(3))
    at = START

    async def run() -> tuple[Any, Any, Any, Any]:
        db = Database(db_url, pool_size=2)
        buf = ShownBuffer(db)
        buf.record(t, c1, [(a1, p1), (a2, p2)], "S1", at)
        buf.record(
            t, c1, [(a1, p1), (a2, p2)], "S1", at + timedelta(seconds=5)
        )  # same answer: one row, count 2
        buf.record(t, c1, [(a1, p1)], "S2", at + timedelta(seconds=7))  # another store, a smaller answer
        buf.record(t, c2, [(a3, p1)], None, at + timedelta(seconds=3))
        assert len(buf) == 3
        assert await buf.flush() == 3
        first = await _rows(db, t)
        buf.record(t, c1, [(a1, p1)], "S2", at - timedelta(seconds=1))  # a late, earlier sighting
        assert await buf.flush() == 1
        assert await buf.flush() == 0  # nothing left
        second = await _rows(db, t)
        await db.dispose()
        return first[0], first[1], second[0], second[1]

    views, shown, views2, shown2 = asyncio.run(run())
    assert [
        (v.contact_id, v.store_external_id, v.times, v.at, v.last_at, v.assignment_ids) for v in views
    ] == [
        (c1, "S1", 2, at, at + timedelta(seconds=5), [a1, a2]),
        (c1, "S2", 1, at + timedelta(seconds=7), at + timedelta(seconds=7), [a1]),
        (c2, None, 1, at + timedelta(seconds=3), at + timedelta(seconds=3), [a3]),
    ]
    assert {a: (s.promotion_id, s.times, s.first_shown_at, s.last_shown_at) for a, s in shown.items()} == {
        a1: (p1, 3, at, at + timedelta(seconds=7)),
        a2: (p2, 2, at, at + timedelta(seconds=5)),
        a3: (p1, 1, at + timedelta(seconds=3), at + timedelta(seconds=3)),
    }
    assert len(views2) == 4 and views2[3].times == 1
    assert (shown2[a1].times, shown2[a1].first_shown_at, shown2[a1].last_shown_at) == (
        4, at - timedelta(seconds=1), at + timedelta(seconds=7)
    )  # fmt: skip
    assert shown2[a3] == shown[a3]


def test_a_failed_write_is_kept_for_the_next_one(db_url: str, tmp_path: Path) -> None:
    t, c, p, a = (uuid.uuid4() for _ in range(4))

    async def run() -> tuple[int, int, Any]:
        broken = Database(f"sqlite:///{tmp_path / 'no-tables.sqlite3'}", pool_size=1)  # never migrated
        buf = ShownBuffer(broken)
        buf.record(t, c, [(a, p)], "S1", START)
        written = await buf.flush()  # fails: no such table
        kept = len(buf)
        buf.record(t, c, [(a, p)], "S1", START + timedelta(seconds=1))  # merges with the kept one
        await broken.dispose()
        buf.db = good = Database(db_url, pool_size=2)
        assert await buf.flush() == 1
        rows = await _rows(good, t)
        await good.dispose()
        return written, kept, rows

    written, kept, (views, shown) = asyncio.run(run())
    assert (written, kept) == (0, 1)
    assert [(v.times, v.at, v.last_at) for v in views] == [(2, START, START + timedelta(seconds=1))]
    assert shown[a].times == 2


def test_the_buffer_is_bounded(db_url: str) -> None:
    t, p = uuid.uuid4(), uuid.uuid4()

    async def run() -> tuple[int, int, int]:
        db = Database(db_url, pool_size=2)
        buf = ShownBuffer(db, limit=2)
        contacts = [uuid.uuid4() for _ in range(3)]
        for c in contacts:
            buf.record(t, c, [(uuid.uuid4(), p)], None, START)
        buf.record(
            t, contacts[0], [(uuid.uuid4(), p)], None, START
        )  # another answer to a known contact: a view
        n = len(buf)
        written = await buf.flush()
        await db.dispose()
        return n, written, buf.dropped

    assert asyncio.run(run()) == (2, 2, 2)


def test_a_large_batch_is_written_whole(db_url: str) -> None:
    """More views than one slice of SQLite's write (`SQLITE_SLICE`): every view is a row, and an assignment shown
    in views of several slices is summed once over all of them."""
    t, p, shared = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    n = 2 * SQLITE_SLICE + 7
    contacts = [uuid.uuid4() for _ in range(n)]
    own = [uuid.uuid4() for _ in range(n)]

    async def run() -> tuple[int, list[Any], dict[uuid.UUID, Any]]:
        db = Database(db_url, pool_size=2)
        buf = ShownBuffer(db, batch=10 * n)
        for i, c in enumerate(contacts):
            buf.record(t, c, [(shared, p), (own[i], p)], None, START + timedelta(seconds=i))
        written = await buf.flush()
        views, shown = await _rows(db, t)
        await db.dispose()
        return written, views, shown

    written, views, shown = asyncio.run(run())
    assert written == n and len(views) == n
    assert [v.assignment_ids for v in views[:2]] == [[shared, own[0]], [shared, own[1]]]
    s = shown[shared]
    assert (s.times, s.first_shown_at, s.last_shown_at) == (n, START, START + timedelta(seconds=n - 1))
    assert len(shown) == n + 1 and all(shown[a].times == 1 for a in own)


def test_sqlite_writes_slice_by_slice_and_keeps_the_slice_that_failed(sqlite_url: str) -> None:
    """SQLite writes a batch one slice per transaction (a redeem waits for one slice, not a whole batch). A slice
    the database refuses (here a trigger that aborts on one contact of the second slice) is kept with the slices
    after it, for the next flush; the slices before it are written once — nothing lost, nothing counted twice."""
    import sqlite3

    t, p = uuid.uuid4(), uuid.uuid4()
    n = 3 * SQLITE_SLICE
    contacts = [uuid.uuid4() for _ in range(n)]
    own = [uuid.uuid4() for _ in range(n)]
    poisoned = contacts[SQLITE_SLICE + 3]  # in the second slice (the buffer keeps arrival order)
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute(
            f"CREATE TRIGGER refuse_one BEFORE INSERT ON promotion_view WHEN NEW.contact_id = '{poisoned.hex}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    async def run() -> tuple[int, int, int, int, list[Any], dict[uuid.UUID, Any]]:
        db = Database(sqlite_url, pool_size=2)
        buf = ShownBuffer(db, batch=10 * n)
        for i, c in enumerate(contacts):
            buf.record(t, c, [(own[i], p)], None, START + timedelta(seconds=i))
        first = await buf.flush()
        kept = len(buf)
        with sqlite3.connect(path) as raw:
            raw.execute("DROP TRIGGER refuse_one")
        second = await buf.flush()
        views, shown = await _rows(db, t)
        await db.dispose()
        return first, kept, second, len(buf), views, shown

    first, kept, second, left, views, shown = asyncio.run(run())
    assert (first, kept, second, left) == (SQLITE_SLICE, n - SQLITE_SLICE, n - SQLITE_SLICE, 0)
    assert sorted(v.contact_id for v in views) == sorted(contacts)
    assert len(shown) == n and all(s.times == 1 for s in shown.values())


def test_sqlite_copies_the_log_into_the_file_every_so_many_views_outside_the_write_turn(
    sqlite_url: str, monkeypatch: Any
) -> None:
    """On SQLite the writer checkpoints the log itself, every `SHOWN_CHECKPOINT_VIEWS` views written, after its
    slices and outside the process's write turn (a redeem never waits for a checkpoint)."""
    from promoflow.server.receipt import shown

    monkeypatch.setattr(shown, "SHOWN_CHECKPOINT_VIEWS", 5)
    seen: list[bool] = []  # for each checkpoint: whether a unit of work held the write turn meanwhile
    real = shown._checkpoint_sqlite

    def checkpoint(p: str) -> None:
        seen.append(turn_of(sqlite_url).held)
        real(p)

    monkeypatch.setattr(shown, "_checkpoint_sqlite", checkpoint)
    t, p = uuid.uuid4(), uuid.uuid4()

    async def run() -> list[int]:
        db = Database(sqlite_url, pool_size=2)
        buf = ShownBuffer(db)
        calls = []
        for k in range(3):  # 3 views, then 3 more (6 >= 5: one checkpoint), then 3 more (3 since: none)
            for _ in range(3):
                buf.record(t, uuid.uuid4(), [(uuid.uuid4(), p)], None, START + timedelta(seconds=k))
            await buf.flush()
            calls.append(len(seen))
        await db.dispose()
        return calls

    assert asyncio.run(run()) == [0, 1, 1]
    assert seen == [False]
