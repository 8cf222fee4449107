"""The SQLite lane (promotion/sqlitelane.py) runs its statements on the event loop's own thread, and must never make
the loop wait: a redeem group that finds the database's write lock taken by another connection (another process)
goes to the writer thread, which waits for it, while the loop goes on answering."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from promoflow.kit.clock import FrozenClock
from promoflow.server.config import Settings
from promoflow.server.db import Database, sqlite_file
from promoflow.server.http.app import create_app
from promoflow.server.promotion.rules import CHANNEL_BITS
from promoflow.server.promotion.sqlitelane import SqliteLane
from promoflow.server.tenant.service import TenantService
from promoflow.wire.engage import ChannelType
from tests.conftest import Api, make_tenant

from ._support import assign, new_contact, new_promotion


@pytest.fixture
def lite(sqlite_url: str, data_dir: Path, clock: FrozenClock) -> Iterator[Api]:
    """The app on SQLite only (this lane is SQLite's)."""
    settings = Settings(database_url=sqlite_url, data_dir=data_dir, run_worker=False,
                        default_rate_limit_per_second=0)  # fmt: skip
    tenant = make_tenant(settings)
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        yield Api(client, clock, tenant, settings)


def test_a_redeem_waiting_for_another_writer_leaves_the_loop_free(lite: Api) -> None:
    contact = new_contact(lite)["id"]
    promotion = new_promotion(lite)["id"]
    first, second = (assign(lite, contact, promotion)["id"] for _ in range(2))
    url = lite.settings.resolved_database_url()
    now = lite.clock.now()

    async def run() -> tuple[list[str], Any, Any]:
        db = Database(url, pool_size=1)
        async with db.read() as conn:
            ctx = await TenantService(now).authenticate(conn, lite.tenant["apiKey"])
        assert ctx is not None
        lane = SqliteLane.open(db)
        assert lane is not None
        path = sqlite_file(url)
        assert path is not None
        other = sqlite3.connect(path, isolation_level=None)  # another process's write transaction
        try:
            other.execute("BEGIN IMMEDIATE")
            waiting = asyncio.ensure_future(lane.redeem(ctx, uuid.UUID(first), None, ChannelType.POS, now))
            for _ in range(
                10
            ):  # the redeem queues, its group finds the lock taken and goes to the writer thread
                await asyncio.sleep(0)
            rows, _ = await lane.fetch(ctx, uuid.UUID(contact), CHANNEL_BITS[ChannelType.POS], now)
            shown_meanwhile = sorted(str(r[0]) for r in rows)
            assert not waiting.done() and lane.groups == 0
            other.execute("COMMIT")
            won = await waiting
            again = await lane.redeem(ctx, uuid.UUID(first), None, ChannelType.POS, now)
            return shown_meanwhile, won, again
        finally:
            other.close()
            await lane.close()
            await db.dispose()

    shown_meanwhile, won, again = asyncio.run(run())
    assert shown_meanwhile == sorted([first, second])  # answered while the redeem waited for the lock
    assert won is not None and str(won[0][0]) == promotion
    assert again is None  # exactly once
    fetched = lite.get(f"/api/v2/contacts/{contact}/promotions?redemptionChannelType=POS").json()
    assert [p["id"] for p in fetched] == [second]


@pytest.mark.parametrize("turns", [1, 2], ids=["before-the-writer-began", "in-its-turn"])
def test_writes_queued_when_the_lane_stops_are_failed_not_left_waiting_or_run(
    sqlite_url: str, turns: int
) -> None:
    """The writer takes its group at least one turn of the event loop after the first write queued; a stop (the
    task cancelled at shutdown) before it began or in that turn fails every write queued — none waits forever,
    none runs later."""
    ran: list[int] = []

    async def run() -> list[BaseException | None]:
        db = Database(sqlite_url, pool_size=1)
        lane = SqliteLane.open(db)
        assert lane is not None
        writes = [asyncio.ensure_future(lane.write(lambda conn, k=k: ran.append(k))) for k in range(3)]
        for _ in range(turns):  # 1: the writes queued, the writer not begun; 2: the writer in its turn
            await asyncio.sleep(0)
        assert lane._task is not None
        lane._task.cancel()
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        after = await lane.write(lambda conn: ran.append(99))  # a later write runs alone
        assert after is None
        await lane.close()
        await db.dispose()
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    outcomes = asyncio.run(run())
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert ran == [99]


def test_writes_that_arrive_over_the_next_turns_commit_in_one_group(sqlite_url: str) -> None:
    """The writer lets the event loop turn while turns bring more writes (up to `GATHER_TURNS`): writes handed over
    one turn apart — requests whose handlers reach the lane a step later — commit together, in the order queued."""
    ran: list[int] = []

    async def run() -> int:
        db = Database(sqlite_url, pool_size=1)
        lane = SqliteLane.open(db)
        assert lane is not None

        async def later(k: int) -> None:
            for _ in range(k):
                await asyncio.sleep(0)
            await lane.write(lambda conn: ran.append(k))

        await asyncio.gather(*(later(k) for k in range(3)))
        await lane.close()
        await db.dispose()
        return lane.groups

    assert asyncio.run(run()) == 1
    assert ran == [0, 1, 2]
