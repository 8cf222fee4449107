"""The in-process worker of `serve` on an event loop of its own, in a thread of its own.

On the API's event loop, each of a job's database round trips waited for the loop's next turn, behind every
request in flight: under a checkout burst an import batch of 100 lines took seconds — on SQLite holding the
database's one write lock all that time, so the redeems waited seconds for it — and a 100,000-line file advanced a
few hundred lines a minute. On its own loop the worker's round trips come back at once. It still shares the
process's GIL, and on SQLite the database file's write turn (`db.WriteTurn`, first come first served with the
API's writers), so a checkout waits for at most the one batch being written.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from ...kit.clock import Clock
from ..config import Settings
from ..db import Database
from .runner import Worker

if TYPE_CHECKING:
    from ..features import Composition

POOL_SIZE = 4  # the worker's database connections (its jobs run one statement at a time each)


class WorkerThread:
    """A `Worker` with a `Database` of its own, run on an event loop in a thread; ``wake`` and ``stop`` may be
    called from any thread."""

    def __init__(
        self, url: str, clock: Clock, *, settings: Settings, composition: Composition, schedule: bool
    ) -> None:
        self.url = url
        self.clock = clock
        self.settings = settings
        self.composition = composition
        self.schedule = schedule
        self.worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promoflow-worker", daemon=True)

    def start(self, timeout: float = 60) -> None:
        """Start the thread; returns once its worker runs (or raises what kept it from starting)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the worker did not start within {timeout:.0f} s")
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to `start` when it happened before the worker ran
            self._failed = exc
            if self._ready.is_set():
                raise
        finally:
            self._ready.set()

    async def _main(self) -> None:
        db = Database(self.url, pool_size=POOL_SIZE)
        try:
            s = self.settings
            self.worker = Worker(
                db, self.clock, settings=s, composition=self.composition, poll_seconds=s.worker_poll_seconds,
                stall_after=timedelta(seconds=s.worker_stall_seconds), schedule=self.schedule,
            )  # fmt: skip
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self.worker.run()
        finally:
            await db.dispose()

    def _call(self, method: str) -> None:
        loop, worker = self._loop, self.worker
        if loop is not None and worker is not None and not loop.is_closed():
            loop.call_soon_threadsafe(getattr(worker, method))

    def wake(self) -> None:
        """Look for work now (an enqueue in this process)."""
        self._call("wake")

    def stop(self) -> None:
        self._call("stop")

    async def join(self) -> None:
        """Wait until the worker has stopped (its jobs back in the queue or done) and its thread has ended."""
        await asyncio.to_thread(self._thread.join)
