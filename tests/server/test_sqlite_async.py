"""The routed path's SQLite connections (`sqlite_async`): fewer trips to the driver's thread, the same results —
whole and streamed reads, commits and rollbacks, a BEGIN that cannot take the lock — on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from promoflow.server import sqlite_async
from promoflow.server.db import Database


class _Trips:
    """Stands in for a connection's queue to its thread and counts the calls the loop waits for (those with a
    future; a cursor's close is queued without one)."""

    def __init__(self, queue: Any) -> None:
        self.queue, self.waited, self.queued = queue, 0, 0

    def put_nowait(self, item: tuple[Any, Any]) -> None:
        self.queued += 1
        self.waited += item[0] is not None
        self.queue.put_nowait(item)


async def _counted(db: Database) -> _Trips:
    """The trips of the pool's one connection from here on."""
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, sqlite_async.Connection)
        trips = _Trips(driver._tx)
        driver._tx = trips  # type: ignore[assignment]
    return trips


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'trips.sqlite3'}"
    with sqlite3.connect(tmp_path / "trips.sqlite3") as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        setup.executemany("INSERT INTO item (name) VALUES (?)", [(f"n{i:04d}",) for i in range(1000)])
    return Database(url, pool_size=1)


def test_a_one_statement_read_waits_for_one_trip_and_a_write_for_two(db: Database) -> None:
    async def main() -> tuple[int, int, int, Any]:
        trips = await _counted(db)
        async with db.read() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM item"))).scalar_one()
        read = trips.waited
        async with db.write() as conn:
            new_id = (await conn.execute(text("INSERT INTO item (name) VALUES ('new')"))).lastrowid
        written = trips.waited - read
        async with db.write():
            pass
        nothing = trips.waited - read - written
        await db.dispose()
        return read, written, nothing, (count, new_id)

    read, written, nothing, (count, new_id) = asyncio.run(main())
    assert (count, new_id) == (1000, 1001)
    assert read == 1  # BEGIN with the SELECT and its rows (the ROLLBACK as the connection goes back: queued)
    # BEGIN IMMEDIATE with the INSERT; the COMMIT (the pool's rollback after it: none open)
    assert written == 2
    assert nothing == 0  # a transaction that ran nothing has nothing to begin or end


def test_results_longer_than_a_chunk_are_whole_and_stream_in_order(db: Database) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with db.read() as conn:
            whole = (await conn.execute(text("SELECT id, name FROM item ORDER BY id"))).all()
            streamed = []
            result = await conn.stream(text("SELECT id FROM item ORDER BY id"))
            async for partition in result.partitions(100):
                streamed.append([r[0] for r in partition])
            raw = await conn.get_raw_connection()
            cursor = await raw.driver_connection.cursor()
            await cursor.execute("SELECT id FROM item WHERE id <= ? ORDER BY id", (600,))
            pieces = [
                len(await cursor.fetchmany(300)),
                (await cursor.fetchone())[0],
                len(await cursor.fetchall()),
            ]
            pieces.append(await cursor.fetchone())
            await cursor.close()
        await db.dispose()
        return whole, streamed, pieces

    whole, streamed, pieces = asyncio.run(main())
    assert [tuple(r) for r in whole] == [(i, f"n{i - 1:04d}") for i in range(1, 1001)]
    assert streamed == [list(range(i, i + 100)) for i in range(1, 1001, 100)]
    assert pieces == [300, 301, 299, None]  # across the first chunk's end (256) and to the last row


def test_a_rolled_back_write_leaves_nothing_and_the_connection_goes_on(db: Database, tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO item (name) VALUES ('gone')"))
                raise RuntimeError("the request failed")
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO item (name) VALUES ('kept')"))
        await db.dispose()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "trips.sqlite3") as check:
        names = [r[0] for r in check.execute("SELECT name FROM item WHERE id > 1000 ORDER BY id")]
    assert names == ["kept"]


def test_a_begin_that_cannot_take_the_lock_fails_its_first_statement_and_leaves_no_transaction(
    db: Database, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "trips.sqlite3", isolation_level=None)

    async def main() -> list[str]:
        async with db.engine.connect() as conn:  # the pool's one connection, made to give up quickly
            await conn.exec_driver_sql("PRAGMA busy_timeout=50")
            await conn.commit()
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO item (name) VALUES ('locked out')"))
        holder.execute("ROLLBACK")
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO item (name) VALUES ('after')"))
        async with db.read() as conn:
            names = (await conn.execute(text("SELECT name FROM item WHERE id > 1000"))).scalars().all()
        await db.dispose()
        return list(names)

    assert asyncio.run(main()) == ["after"]
    holder.close()


def test_a_stream_left_half_read_does_not_hold_up_the_next_transaction(db: Database, tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int]:
        async with db.read() as conn:
            result = await conn.stream(text("SELECT id FROM item ORDER BY id"))
            first = [r[0] for r in await result.fetchmany(300)]  # past the first chunk, then left
            await result.close()
        async with db.write() as conn:  # the pool's one connection: its cursor's close queued before this
            await conn.execute(text("DELETE FROM item WHERE id <= 10"))
        async with db.read() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM item"))).scalar_one()
        await db.dispose()
        return first, left

    first, left = asyncio.run(main())
    assert first == list(range(1, 301))
    assert left == 990
    with sqlite3.connect(tmp_path / "trips.sqlite3") as check:
        assert check.execute("SELECT min(id) FROM item").fetchone() == (11,)
