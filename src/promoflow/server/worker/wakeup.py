"""Wake this process's workers from any thread: an FTP upload recorded in `serve` (the FTP server runs in its own
threads, the worker on the API's event loop) is picked up at once instead of at the worker's next poll.

Only workers in the same process are reached. A worker in another process (`promoflow ftp` beside `promoflow
worker`, or several processes on PostgreSQL) finds the job at its next poll, ``PROMOFLOW_WORKER_POLL_SECONDS``
(0.5 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

_lock = threading.Lock()
_running: dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = {}


def register(key: int, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
    """A worker started on ``loop``; ``wake`` runs there (it need not be thread-safe)."""
    with _lock:
        _running[key] = (loop, wake)


def unregister(key: int) -> None:
    with _lock:
        _running.pop(key, None)


def wake_local_workers() -> int:
    """Ask every worker running in this process to look for work now; how many were asked."""
    with _lock:
        targets = list(_running.values())
    for loop, wake in targets:
        with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: it no longer runs
            loop.call_soon_threadsafe(wake)
    return len(targets)
