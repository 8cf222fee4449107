"""The SQLite side of the fast path (`fastlane.Lane`): the fetch and the redeem on raw `sqlite3` connections.

SQLite answers an indexed read or a one-row conditional update in microseconds; what made the embedded server
slow under a checkout burst was everything around it (an async driver that hops to a thread per call, the ORM
layer, one transaction and fsync per redeem). Here:

- **Reads in parallel**: a few reader threads, each with its own connection (WAL: readers never wait for the
  writer; memory-mapped; ``query_only``). The fetch runs the rule's fetch filter (`statements.SQLITE_FETCH`).
- **One writer that group-commits**: redeems queue up while the writer thread commits the previous group; the next
  group runs in one ``BEGIN IMMEDIATE`` … ``COMMIT`` (``synchronous=NORMAL``: no fsync per commit in WAL mode).
  Each redeem in a group is still its own conditional UPDATE (`statements.SQLITE_REDEEM`, from the same rule as
  every other path) whose RETURNING row decides, followed by its redemption row: exactly once, as everywhere. A
  group that fails is retried one redeem per transaction, so one bad redeem fails alone.
- **One writer per process**: a group takes the process's write turn (`Database.write_turn`), the same lock
  every other write unit of work of the process queues on (the in-process worker's import batches, the 'shown'
  buffer), so a redeem waits for at most the batch being written, never a whole import; other processes are
  kept out by SQLite's own lock (``BEGIN IMMEDIATE``, ``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import bindparam, select

from ...wire.engage import ChannelType
from ..contact.errors import ContactNotFoundError
from ..db import Database, connect_sqlite, sqlite_file
from ..exceptions import ServiceUnavailableError
from ..models import contact, promotion
from ..tenant.service import TenantContext
from .fastlane import Faces, LaneUnavailable, Row, Won, cached_faces, remember_faces
from .rules import CHANNEL_BITS
from .statements import SQLITE_FETCH, SQLITE_REDEEM, SQLITE_REDEMPTION_ROW, compile_sqlite

log = logging.getLogger("promoflow.api")

READERS = 4  # reader threads (each with its own connection)
MAX_GROUP = 512  # redeems committed together at most

_P_TENANT = bindparam("t", type_=contact.c.tenant_id.type)
_CONTACT = compile_sqlite(
    select(contact.c.id).where(
        contact.c.id == bindparam("c", type_=contact.c.id.type), contact.c.tenant_id == _P_TENANT
    )
)
_FACE = compile_sqlite(
    select(promotion.c.id.label("promotion_id"), promotion.c.external_id, promotion.c.name, promotion.c.heading,
           promotion.c.description, promotion.c.image_url, promotion.c.link, promotion.c.channels)
    .where(promotion.c.tenant_id == _P_TENANT, promotion.c.id == bindparam("p", type_=promotion.c.id.type),
           promotion.c.activated_at.is_not(None))
)  # fmt: skip


class _FaceRow(NamedTuple):
    promotion_id: uuid.UUID
    external_id: str | None
    name: str
    heading: str | None
    description: str | None
    image_url: str | None
    link: str | None
    channels: list[dict[str, Any]]


# One redeem: (tenant, assignment, contact or None, channel, now).
_Item = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None, ChannelType, datetime]
# One queued write: a function run on the writer's connection inside the group's transaction (a redeem, a
# contact's quick write); its result, or the error that failed it, is the outcome.
Write = Callable[[sqlite3.Connection], Any]
_Outcome = Any
T = TypeVar("T")


class _Failed(NamedTuple):
    """The outcome of a write that raised (alone in its transaction, rolled back)."""

    error: Exception


def redeem_one(conn: sqlite3.Connection, item: _Item) -> tuple[Any, ...] | None:
    """One redeem inside the caller's write transaction: the rule's conditional write, then for a won row its
    redemption row. The RETURNING row decides (None: the write changed nothing)."""
    tenant_id, assignment_id, contact_id, channel, now = item
    stmt = SQLITE_REDEEM[contact_id is not None]
    params = stmt.params(
        now=now, ch=channel.value, a=assignment_id, t=tenant_id, c=contact_id, bit=CHANNEL_BITS[channel]
    )
    raw = conn.execute(stmt.sql, params).fetchall()  # fetched to the end: the statement is done before COMMIT
    if not raw:
        return None
    row = stmt.row(raw[0])
    ins = SQLITE_REDEMPTION_ROW
    conn.execute(
        ins.sql,
        ins.params(id=uuid.uuid4(), t=tenant_id, a=assignment_id, seq=row[5], now=now, ch=channel.value),
    )
    return row


def fetch_rows(
    conn: sqlite3.Connection, tenant_id: uuid.UUID, contact_id: uuid.UUID, bit: int, now: datetime
) -> list[Row]:
    """The rule's fetch filter: (assignment, promotion, valid from, valid to) of what the contact is shown now."""
    stmt = SQLITE_FETCH[bool(bit)]
    raw = conn.execute(stmt.sql, stmt.params(c=contact_id, t=tenant_id, now=now, bit=bit)).fetchall()
    return [stmt.row(r) for r in raw]


class SqliteLane:
    """Reader threads and one group-committing writer thread on the database file of ``db``."""

    def __init__(self, path: str, db: Database, readers: int = READERS) -> None:
        self.path = path
        self.db = db
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="promoflow-sqlite-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="promoflow-sqlite-write")
        self._writer_conn: sqlite3.Connection | None = None
        self._queue: list[tuple[Write, asyncio.Future[_Outcome]]] = []
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # write transactions committed (tests and the bench read them)

    @classmethod
    def open(cls, db: Database) -> SqliteLane | None:
        """The lane of a SQLite database file; None for an in-memory database (one connection sees it)."""
        path = sqlite_file(db.url)
        return None if path is None else cls(path, db)

    # ----------------------------------------------------------------------------------------- connections

    def _connect(self, *, writer: bool, busy_ms: int = 30000) -> sqlite3.Connection:
        conn = connect_sqlite(self.path, writer=writer, busy_ms=busy_ms)
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(writer=False)
        return conn

    def _inline(self) -> sqlite3.Connection:
        """The reading connection of the event loop's own thread: it never waits for a lock (a read that would
        is handed to a reader thread instead, `fetch`)."""
        conn: sqlite3.Connection | None = getattr(self._local, "inline", None)
        if conn is None:
            conn = self._local.inline = self._connect(writer=False, busy_ms=0)
        return conn

    # ---------------------------------------------------------------------------------------------- reads

    def _faces_sync(
        self, conn: sqlite3.Connection, tenant_id: uuid.UUID, currency: str, ids: Iterable[uuid.UUID]
    ) -> Faces:
        out, missing = cached_faces(ids, currency)
        rows: list[_FaceRow] = []
        for pid in missing:
            raw = conn.execute(_FACE.sql, _FACE.params(t=tenant_id, p=pid)).fetchall()
            rows.extend(_FaceRow(*_FACE.row(r)) for r in raw)
        remember_faces(rows, currency, out)
        return out

    def _fetch_sync(
        self, conn: sqlite3.Connection, tenant_id: uuid.UUID, currency: str, contact_id: uuid.UUID, bit: int,
        now: datetime,
    ) -> tuple[list[Row], Faces] | None:  # fmt: skip
        rows = fetch_rows(conn, tenant_id, contact_id, bit, now)
        if not rows and not conn.execute(_CONTACT.sql, _CONTACT.params(c=contact_id, t=tenant_id)).fetchall():
            return None
        return rows, self._faces_sync(conn, tenant_id, currency, {r[1] for r in rows})

    async def fetch(
        self, ctx: TenantContext, contact_id: uuid.UUID, bit: int, now: datetime
    ) -> tuple[list[Row], Faces]:
        """Read on the event loop's thread: a fetch is a few indexed reads of microseconds each, less than
        handing it to a thread and back costs. A read that would wait for a lock (rare in WAL mode: a checkpoint
        resetting the log, a recovery) goes to a reader thread, which may wait."""
        args = (ctx.tenant_id, ctx.currency, contact_id, bit, now)
        try:
            try:
                found = self._fetch_sync(self._inline(), *args)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                loop = asyncio.get_running_loop()
                found = await loop.run_in_executor(
                    self._readers, lambda: self._fetch_sync(self._reader(), *args)
                )
        except sqlite3.Error as exc:
            log.warning("fastlane.fetch_failed", exc_info=True)
            raise LaneUnavailable from exc
        if found is None:
            raise ContactNotFoundError(f"contact {contact_id} not found")
        return found

    # --------------------------------------------------------------------------------------------- writes

    def _write_group(self, items: Sequence[Write]) -> list[_Outcome]:
        """Runs on the writer thread: the group's writes in one transaction; if that fails, one by one."""
        conn = self._writer_conn
        if conn is None:
            conn = self._writer_conn = self._connect(writer=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            out: list[_Outcome] = [item(conn) for item in items]
            conn.execute("COMMIT")
            self.groups += 1
            return out
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(items) == 1:
                log.warning("fastlane.write_failed", exc_info=True)
                return [_Failed(exc)]
            return [self._write_group([item])[0] for item in items]

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            items = [item for item, _ in group]
            try:
                async with self.db.write_turn():
                    outcomes = await loop.run_in_executor(self._writer, self._write_group, items)
            except BaseException as exc:  # cancelled at shutdown, or the executor is gone
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
                raise
            for (_, fut), outcome in zip(group, outcomes, strict=True):
                if fut.done():  # the request went away; its redeem stands (or not) all the same
                    continue
                if isinstance(outcome, _Failed):
                    fut.set_exception(outcome.error)
                else:
                    fut.set_result(outcome)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread inside the next group's transaction (it commits with the group; a
        group that fails is retried one write per transaction, so ``fn`` may run twice, the first time rolled
        back). Raises the error that failed it (rolled back), or RuntimeError when the lane stopped."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Outcome] = loop.create_future()
        self._queue.append((fn, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="promoflow-sqlite-writer")
        return cast(T, await fut)

    async def redeem(
        self, ctx: TenantContext, assignment_id: uuid.UUID, contact_id: uuid.UUID | None, channel: ChannelType,
        now: datetime,
    ) -> tuple[Won, Faces] | None:  # fmt: skip
        loop = asyncio.get_running_loop()
        item: _Item = (ctx.tenant_id, assignment_id, contact_id, channel, now)
        try:
            row = await self.write(lambda conn: redeem_one(conn, item))
        except (sqlite3.Error, RuntimeError) as exc:
            # The group may or may not have committed: answer "retry" rather than guess.
            raise ServiceUnavailableError("the database did not answer; retry with the same request", retry_after=1) from exc  # fmt: skip
        if row is None:
            return None
        assert isinstance(row, tuple)
        promotion_id = row[2]
        faces, missing = cached_faces((promotion_id,), ctx.currency)
        if missing:
            faces = await loop.run_in_executor(
                self._readers, lambda: self._faces_sync(self._reader(), ctx.tenant_id, ctx.currency, missing)
            )
        return (promotion_id, row[3], row[4]), faces

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            if task.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(task, return_exceptions=True)
            else:  # started by a request served on another event loop (several clients of one app): wait there
                waiting = asyncio.run_coroutine_threadsafe(asyncio.wait([task]), task.get_loop())
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(waiting), timeout=10)
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
