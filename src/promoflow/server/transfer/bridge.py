"""A thread-side door into the async database layer.

pyftpdlib runs each FTP connection in its own thread; the services and ``enqueue`` are async. Rather than
duplicate their SQL for a sync engine, the FTP server owns one event loop in a helper thread with its own
``Database``, and a connection thread submits coroutines to it and waits for the answer. One code path for the
SQL, one pool for the whole FTP server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..db import Database

T = TypeVar("T")


class DbBridge:
    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        self.pool_size = pool_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Database | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="promoflow-ftp-db", daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._db = Database(self.url, pool_size=self.pool_size)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._db.dispose())
            loop.close()

    def call(self, fn: Callable[[Database], Awaitable[T]], timeout: float = 120) -> T:
        """Run ``fn(db)`` on the bridge's loop and wait for its result (or exception)."""
        if self._loop is None or self._db is None:
            raise RuntimeError("the database bridge is not started")
        db = self._db

        async def run() -> T:
            return await fn(db)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._loop = self._thread = None


__all__ = ["DbBridge"]
