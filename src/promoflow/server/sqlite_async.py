"""SQLAlchemy's async SQLite connections, with as few trips to the driver's thread as a transaction allows.

The routed path reaches SQLite through aiosqlite: each connection has a thread, and every call on it is queued
to that thread and its result handed back to the event loop — one turn of the loop each. A one-statement read
took six (``BEGIN``; open a cursor, execute, fetch the rows, close the cursor; ``ROLLBACK``). Under a checkout
burst on the embedded default a turn of the loop is ~10-15 ms (every connection's request runs in it), so an
admin page or an assignment call waited tens of milliseconds a statement for the loop alone, whatever its
statements cost (a routed ``GET`` during a fetch burst: p50 141 ms).

`creator` gives SQLAlchemy's aiosqlite dialect (through ``async_creator``) an aiosqlite connection that makes
those calls in fewer trips, each change keeping the order the thread runs them in (its queue is first come,
first served):

- a cursor runs its statement and fetches a first chunk of rows in one call (`Cursor.execute`); the rows are
  served from that chunk; a result longer than a chunk is fetched in further trips, so a streamed result
  (``yield_per``: the exports) still holds at most a chunk besides SQLAlchemy's own buffer;
- a cursor is made on the loop's side (a `sqlite3.Cursor` is a Python object until it executes; SQLAlchemy
  connects with ``check_same_thread=False``) and closed by a call queued behind the connection's work, not
  waited for;
- ``BEGIN`` is held back and run on the thread just before the transaction's first statement, in that
  statement's call (a failure to begin — the database locked past the busy timeout — is that statement's);
  a ``COMMIT`` or ``ROLLBACK`` with no transaction open (nothing ran since ``BEGIN``, or SQLAlchemy's rollback
  when a connection goes back to its pool after one) needs no trip, and the ``ROLLBACK`` that ends a transaction
  that changed no row is queued, not waited for.

A one-statement read waits for one trip, a one-statement write for two (the statement, the ``COMMIT``).
Transactions, errors and the connection's thread are aiosqlite's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import aiosqlite
from aiosqlite.context import contextmanager
from sqlalchemy.dialects.sqlite import pysqlite as sqlite_pysqlite
from sqlalchemy.engine import make_url

CHUNK = 256  # rows fetched with the statement (a longer result: further trips, CHUNK at a time or as asked)

T = TypeVar("T")


class Connection(aiosqlite.Connection):
    _begin: str | None = None  # a BEGIN not yet run: it runs before the next statement, on the thread
    _changes = -1  # the connection's count of rows changed when the open transaction began (-1: not known)

    @contextmanager  # (awaited, or entered with ``async with``, as aiosqlite's)
    async def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self, self._conn.cursor())

    async def _run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the thread, after the held-back BEGIN if there is one."""
        begin, self._begin = self._begin, None
        if begin is None:
            return await self._execute(fn)  # type: ignore[no-any-return,no-untyped-call]

        def begun() -> T:
            self._changes = self._conn.total_changes
            self._conn.execute(begin)
            return fn()

        return await self._execute(begun)  # type: ignore[no-any-return,no-untyped-call]

    def _open(self) -> bool:
        """Whether a transaction is open on the thread's side (none while a BEGIN is held back)."""
        self._begin = None
        return bool(self._connection is not None and self._connection.in_transaction)

    async def commit(self) -> None:
        if self._open():
            await super().commit()

    async def rollback(self) -> None:
        """Waited for when the transaction changed rows (or might have); a transaction that only read is rolled
        back by a call queued behind it, not waited for — nothing of it can fail that anyone could act on, and
        whatever the connection does next runs after it."""
        if not self._open():
            return
        changes, self._changes = self._changes, -1
        if changes >= 0 and self._conn.total_changes == changes:
            self._tx.put_nowait((None, self._conn.rollback))
        else:
            await super().rollback()


class Cursor(aiosqlite.Cursor):
    """An aiosqlite cursor that executes and fetches a first chunk in one trip (see the module)."""

    _conn: Connection

    def __init__(self, conn: Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._clear()

    def _clear(self) -> None:
        """No rows held: before a statement (a failed one leaves none of the last one's) and at the close."""
        self._rows: list[Any] = []  # fetched, not yet handed out
        self._done = True  # the statement has no rows left on the thread's side

    def _first(self, sql: str, parameters: Any) -> tuple[list[Any], bool]:
        cursor = self._cursor
        cursor.execute(sql, parameters)
        if cursor.description is None:
            return [], True
        rows = cursor.fetchmany(CHUNK)
        return rows, len(rows) < CHUNK

    async def _execute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every call of this cursor's on the thread (aiosqlite's fetches too): after a held-back BEGIN."""
        return await self._conn._run(partial(fn, *args, **kwargs))

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        self._clear()
        if not parameters and sql.lstrip()[:5].upper() == "BEGIN":
            self._conn._begin = sql
            return self
        self._rows, self._done = await self._execute(self._first, sql, parameters or [])
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        self._clear()
        await super().executemany(sql, parameters)
        return self

    async def executescript(self, sql_script: str) -> Cursor:
        self._clear()
        await super().executescript(sql_script)
        return self

    async def fetchone(self) -> Any:
        if self._rows:
            return self._rows.pop(0)
        if self._done:
            return None
        row = await super().fetchone()
        self._done = row is None
        return row

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        wanted = self.arraysize if size is None else size
        out, self._rows = self._rows[:wanted], self._rows[wanted:]
        if len(out) < wanted and not self._done:
            more = list(await super().fetchmany(wanted - len(out)))
            self._done = len(more) < wanted - len(out)
            out.extend(more)
        return out

    async def fetchall(self) -> Sequence[Any]:
        out, self._rows = self._rows, []
        if not self._done:
            out.extend(await super().fetchall())
            self._done = True
        return out

    async def close(self) -> None:
        """Queued behind the connection's work, not waited for (an error closing a cursor of a connection that
        is gone is nobody's to handle)."""
        self._clear()
        self._conn._tx.put_nowait((None, self._cursor.close))


def creator(url: str) -> Callable[[], Connection]:
    """For ``create_async_engine(url, async_creator=creator(url))``: `aiosqlite.connect` with `Connection` and
    the arguments SQLAlchemy's dialect would have connected with (``async_creator`` is given none); the
    connection's thread does not keep the process alive, as the dialect's own does not."""
    args, kwargs = sqlite_pysqlite.dialect().create_connect_args(make_url(url))

    def connect() -> Connection:
        conn = Connection(partial(sqlite3.connect, *args, **kwargs), iter_chunk_size=64)
        conn._thread.daemon = True
        return conn

    return connect
