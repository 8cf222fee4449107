"""Engines and units of work.

The edge (a request, a job, a CLI command) opens a unit of work, services run their statements on the
connection they are given and never commit, and the edge commits once. On SQLite every write unit of work
starts with ``BEGIN IMMEDIATE`` (so two writers queue on the database lock instead of failing on upgrade), and
in one process writers also queue on the file's write turn (`WriteTurn`, first come first served, shared by the
process's event loops) so they do not hold threads while they wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from . import sqlite_async


def _async_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    u = make_url(url)
    if u.drivername.startswith("sqlite"):
        u = u.set(drivername="sqlite")
    elif u.drivername.startswith("postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).drivername.startswith("sqlite")


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory database (only its own connection sees it)."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


MMAP_BYTES = 256 * 1024 * 1024  # raw connections read up to this much of the database file memory-mapped


def connect_sqlite(path: str, *, writer: bool, busy_ms: int = 30000) -> sqlite3.Connection:
    """A raw `sqlite3` connection to a database file, for the paths that bypass SQLAlchemy (the fast lane, the
    'shown' writer). Autocommit: BEGIN is the caller's. A writer's has the engine's settings (WAL,
    ``synchronous=NORMAL``, foreign keys); a reader's is query-only. Both read memory-mapped."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=64)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    if writer:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    else:
        conn.execute("PRAGMA query_only=1")
    return conn


def wal_checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the write-ahead log into the database file (PASSIVE: it waits for no writer and no writer for it), on a
    writer's own connection in a thread of its own (it waits for the disk); a failure is logged, not raised — the
    next one copies what this one did not."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        logging.getLogger("promoflow.db").warning("db.checkpoint_failed", exc_info=True)


class WriteTurn:
    """The process's turn to write one SQLite file, first come first served, for units of work on any event loop
    of the process (the API's, the in-process worker's, the FTP server's): every `Database` of the process on
    that file shares one (`turn_of`), so its writers queue here rather than on SQLite's lock, whose busy handler
    retries in sleeps of up to 100 ms and serves no one in order. A turn handed to a waiter is its own from the
    moment it leaves the queue: a waiter cancelled after that passes the turn on."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: asyncio.AbstractEventLoop | None = (
            None  # the event loop of the unit of work that has it
        )
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        with self._mutex:
            if self._holder is None or self._holder.is_closed():  # free, or its holder's loop is gone with it
                self._holder = loop
                return
            turn = loop.create_future()
            self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            with self._mutex:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                    raise
            if not turn.cancelled():  # handed over as the wait was cancelled: it is ours to pass on
                self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    @property
    def held(self) -> bool:
        """Whether a unit of work has the turn now."""
        return self._holder is not None

    def _release(self) -> None:
        while True:
            with self._mutex:
                if not self._waiting:
                    self._holder = None
                    return
                turn = self._waiting.popleft()
                loop = self._holder = turn.get_loop()
            if loop is _running_loop():
                loop.call_soon(self._hand_over, turn)
                return
            try:
                loop.call_soon_threadsafe(self._hand_over, turn)
                return
            except RuntimeError:  # its event loop is closed: no one waits there any more
                continue

    def _hand_over(self, turn: asyncio.Future[None]) -> None:
        if turn.cancelled():
            self._release()
        else:
            turn.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_turns: dict[str, WriteTurn] = {}
_turns_lock = threading.Lock()


def turn_of(url: str) -> WriteTurn:
    """The write turn of a SQLite database in this process (a new one for an in-memory database, which only its
    own connection sees)."""
    path = sqlite_file(url)
    if path is None:
        return WriteTurn()
    with _turns_lock:
        return _turns.setdefault(os.path.realpath(path), WriteTurn())


def _sqlite_setup(engine_sync: Engine, *, foreign_keys: bool = True) -> None:
    @event.listens_for(engine_sync, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours (DEFERRED or IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine_sync, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_sync_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """A synchronous engine, for migrations and schema checks. On SQLite its transactions begin IMMEDIATE, so two
    processes migrating one file at once (say `serve` and `worker` started together) queue on the lock instead of
    one failing with "database is locked" when its deferred transaction tries to write.

    ``foreign_keys=False`` is for migrations on SQLite: changing a table there means copying it into a new one
    and dropping the old, and with foreign keys enforced that drop deletes (ON DELETE CASCADE) every row that
    refers to it."""
    url = sync_url(url)
    if is_sqlite(url):
        engine = create_engine(url, poolclass=NullPool)
        _sqlite_setup(engine, foreign_keys=foreign_keys)
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return create_engine(url, pool_pre_ping=True)


_AFTER_COMMIT = "promoflow.after_commit"


def after_commit(conn: AsyncConnection, hook: Callable[[], None]) -> None:
    """Run ``hook`` once the transaction of ``conn`` (opened by `Database.write`) has committed: for effects that
    must not happen for work that rolls back (counting a redemption in the metrics)."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(hook)


PG_CONNECT_TIMEOUT = 5
"""Seconds a new PostgreSQL connection may take (the routed path's and the fast lane's)."""


class Database:
    """The async engine and the two kinds of unit of work (read, write)."""

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        if self.sqlite:
            async_url = _async_url(url)
            self.engine: AsyncEngine = create_async_engine(
                async_url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=60,
                async_creator=sqlite_async.creator(async_url),
            )
            _sqlite_setup(self.engine.sync_engine)
            self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self.engine = create_async_engine(
                _async_url(url),
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=30,
                pool_pre_ping=False,
                # A server that accepts the connection but never answers (hung, or behind a stalled proxy):
                # the request fails in seconds (503, Retry-After) instead of waiting for TCP to give up.
                connect_args={"connect_timeout": PG_CONNECT_TIMEOUT},
            )
            self._write_engine = self.engine
        self._write_lock = turn_of(url) if self.sqlite else None

    @property
    def dialect(self) -> str:
        return "sqlite" if self.sqlite else "postgresql"

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block ends without error and rolls back otherwise. What the block
        registered with `after_commit` runs once it committed (never after a rollback)."""
        if self._write_lock is None:
            async with self._write_engine.begin() as conn:
                conn.info.pop(_AFTER_COMMIT, None)  # left by a rolled-back transaction on this connection
                yield conn
                hooks = conn.info.pop(_AFTER_COMMIT, ())
        else:
            async with self._write_lock, self._write_engine.begin() as conn:
                conn.info.pop(_AFTER_COMMIT, None)
                yield conn
                hooks = conn.info.pop(_AFTER_COMMIT, ())
        for hook in hooks:
            hook()

    @contextlib.asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """This process's turn to write, for a writer with a connection of its own (the SQLite fast path's, the
        'shown' writer's): on SQLite the turn every write unit of work of the process queues on (`WriteTurn`);
        elsewhere nothing."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    async def dispose(self) -> None:
        await self.engine.dispose()
