"""SQLite's write turn (`db.WriteTurn`): one per database file in the process, shared by its event loops (the API's,
the in-process worker's, the FTP server's), first come first served, and a waiter that gives up never takes the
turn with it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from promoflow.server.db import turn_of


def test_one_turn_per_file_for_every_database_of_the_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turn.sqlite3'}"
    assert turn_of(url) is turn_of(f"sqlite:///{tmp_path / '.' / 'turn.sqlite3'}")
    assert turn_of(url) is not turn_of(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    assert turn_of("sqlite://") is not turn_of("sqlite://")  # in memory: each its own database


def test_writers_of_two_event_loops_take_turns_in_order(tmp_path: Path) -> None:
    turn = turn_of(f"sqlite:///{tmp_path / 'turn.sqlite3'}")
    order: list[str] = []
    queued = threading.Event()

    async def write(name: str) -> None:
        async with turn:
            order.append(name)

    def other_loop() -> None:
        async def main() -> None:
            task = asyncio.create_task(write("other loop"))
            await asyncio.sleep(0)  # its first step: it waits for the turn
            queued.set()
            await task

        asyncio.run(main())

    async def main() -> None:
        thread = threading.Thread(target=other_loop)
        async with turn:
            order.append("first")
            thread.start()
            await asyncio.to_thread(queued.wait)
            later = asyncio.create_task(write("later, same loop"))
            await asyncio.sleep(0)
        await later
        await asyncio.to_thread(thread.join)

    asyncio.run(main())
    assert order == ["first", "other loop", "later, same loop"]


def test_a_waiter_that_gives_up_passes_the_turn_on(tmp_path: Path) -> None:
    turn = turn_of(f"sqlite:///{tmp_path / 'turn.sqlite3'}")
    order: list[str] = []

    async def write(name: str) -> None:
        async with turn:
            order.append(name)

    async def main() -> None:
        async with turn:
            gives_up_waiting = asyncio.create_task(write("never"))
            handed_the_turn = asyncio.create_task(write("never either"))
            after = asyncio.create_task(write("after"))
            await asyncio.sleep(0)  # the three wait, in this order
            gives_up_waiting.cancel()  # cancelled in the queue
        handed_the_turn.cancel()  # the turn was just handed to it: cancelled before it could take it
        await asyncio.gather(gives_up_waiting, handed_the_turn, after, return_exceptions=True)
        assert gives_up_waiting.cancelled() and handed_the_turn.cancelled()
        await asyncio.wait_for(write("free again"), timeout=10)

    asyncio.run(main())
    assert order == ["after", "free again"]
