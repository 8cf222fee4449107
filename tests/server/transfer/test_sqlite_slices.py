"""On SQLite an import applies short batches, and the process's other writers (the fast lane's redeem groups
take the same turn) go between two of them: a checkout waits for at most one short batch (issue 15 §1)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.migrate import upgrade
from promoflow.server.transfer.importer import batch_size


def test_batches_are_short_on_sqlite_only(settings: Settings) -> None:
    db = Database(settings.resolved_database_url())
    try:
        expected = min(settings.import_batch_size, settings.import_batch_size_sqlite) if db.sqlite else 1000
        assert batch_size(settings, db) == expected
        assert (
            batch_size(settings.model_copy(update={"import_batch_size": 7}), db) == 7
        )  # a smaller one stands
    finally:
        asyncio.run(db.dispose())


def test_a_queued_writer_goes_between_two_batches(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Batches written back to back by one task (as the importer does) and a writer that queues for the turn
    while the first is being written (a redeem group): it is written right after that batch, not after all."""
    url = f"sqlite:///{tmp_path / 'turn.sqlite3'}"
    upgrade(url)
    order: list[str] = []

    async def run() -> None:
        db = Database(url)
        first_open = asyncio.Event()

        async def importer() -> None:
            for n in range(5):
                async with db.write() as conn:
                    await conn.execute(text("SELECT 1"))
                    order.append(f"batch {n}")
                    first_open.set()
                    await asyncio.sleep(0)  # the batch's statements: the loop runs other tasks meanwhile

        async def redeem_group() -> None:
            await first_open.wait()
            async with db.write_turn():
                order.append("redeems")

        try:
            await asyncio.gather(importer(), redeem_group())
        finally:
            await db.dispose()

    asyncio.run(run())
    assert order == ["batch 0", "redeems", "batch 1", "batch 2", "batch 3", "batch 4"]
