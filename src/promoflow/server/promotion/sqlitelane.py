"""The SQLite side of the fast path (`fastlane.Lane`): the fetch and the redeem on raw `sqlite3` connections.

SQLite answers an indexed read or a one-row conditional update in microseconds; what made the embedded server
slow under a checkout burst was everything around it: an async driver or a thread pool that hops to a thread per
call, the ORM layer, one transaction per redeem — and the GIL. The `sqlite3` module lets go of the GIL for every
statement it runs, so a thread that runs statements beside a busy event loop waits for the GIL again after each
one (up to the interpreter's switch interval, 5 ms): reader and writer threads next to a saturated loop ran a
few hundred statements a second. Here the statements run on the event loop's own thread:

- **Reads on the loop**: the fetch runs the rule's fetch filter (`statements.SQLITE_FETCH`) on the loop's own
  connection (WAL: readers never wait for the writer; memory-mapped; ``query_only``). A read that would wait for
  a lock (rare in WAL mode) goes to a reader thread instead, which may wait.
- **One writer that group-commits**: redeems queue up while a group is written; the next group runs in one
  ``BEGIN IMMEDIATE`` … ``COMMIT`` (``synchronous=NORMAL``: no fsync per commit in WAL mode), on the loop's
  writing connection, which never waits for the lock: when another process holds it, the group is handed to the
  writer thread, which waits. Each redeem in a group is still its own conditional UPDATE
  (`statements.SQLITE_REDEEM`, from the same rule as every other path) whose RETURNING row decides, followed by
  its redemption row: exactly once, as everywhere. A group that fails is retried in the writer thread one redeem
  per transaction, so one bad redeem fails alone. The log is copied into the database file (a checkpoint, which
  waits for the disk) by the writer thread, never on the loop.
- **One writer per process**: a group takes the process's write turn (`Database.write_turn`), the same lock
  every other write unit of work of the process queues on (the in-process worker's import batches, the 'shown'
  buffer), so a redeem waits for at most the batch being written, never a whole import; other processes are
  kept out by SQLite's own lock (``BEGIN IMMEDIATE``).
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
from ..db import Database, connect_sqlite, sqlite_file, wal_checkpoint
from ..exceptions import ServiceUnavailableError
from ..models import contact, promotion
from ..tenant.service import TenantContext
from .domain import PromotionFace
from .fastlane import Faces, LaneUnavailable, Row, Won, cached_faces, remember_faces
from .rules import CHANNEL_BITS
from .statements import SQLITE_FETCH, SQLITE_REDEEM, SQLITE_REDEMPTION_ROW, compile_sqlite

log = logging.getLogger("promoflow.api")

READERS = 2  # reader threads (each with its own connection), for the reads that must wait for a lock
MAX_GROUP = 128  # writes committed together at most (a group holds the event loop while it is written)
GATHER_TURNS = 4  # event-loop turns a group waits for more writes at most
# Writes on the event loop's connection between two checkpoints. A checkpoint copies every page the log holds into
# the database file, once however often it was rewritten since: at 256 writes (~1,000 pages) the writer thread's
# checkpoints cost a contact write 14-19 % of its CPU; at 2,048 (a log of up to ~80 MB) a create cost 268 µs of CPU
# against 331, an update 248 against 288 (contact_bench, A/B in one run). Much longer logs slow every page look-up.
CHECKPOINT_AFTER = 2048

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


# One redeem: (tenant, assignment, contact or None, channel, now).
_Item = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None, ChannelType, datetime]
# One queued write: a function run on the writer's connection inside the group's transaction (a redeem, a
# contact's quick write); its result, or the error that failed it, is the outcome.
Write = Callable[[sqlite3.Connection], Any]
_Outcome = Any
T = TypeVar("T")


def _fail(queued: Iterable[tuple[Write, asyncio.Future[_Outcome]]], error: Exception) -> None:
    """Fail the writes whose callers still wait."""
    for _, fut in queued:
        if not fut.done():
            fut.set_exception(error)


class _Failed(NamedTuple):
    """The outcome of a write that raised (alone in its transaction, rolled back)."""

    error: Exception


def redeem_one(conn: sqlite3.Connection, item: _Item) -> tuple[Any, ...] | None:
    """One redeem inside the caller's write transaction: the rule's conditional write, then for a won row its
    redemption row. The RETURNING row decides: (promotion, valid from, valid to, redemption count), or None when
    the write changed nothing."""
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
        ins.params(id=uuid.uuid4(), t=tenant_id, a=assignment_id, seq=row[3], now=now, ch=channel.value),
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
    """Reads and group-committed writes on the event loop's own thread, on the database file of ``db``; a reader
    pool and a writer thread for what would wait for a lock, and for the checkpoints."""

    def __init__(self, path: str, db: Database, readers: int = READERS) -> None:
        self.path = path
        self.db = db
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="promoflow-sqlite-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="promoflow-sqlite-write")
        self._queue: list[tuple[Write, asyncio.Future[_Outcome]]] = []
        self._task: asyncio.Task[None] | None = None
        self._unchecked = 0  # writes committed on the loop's connection since its last checkpoint
        self._checkpoint: asyncio.Future[None] | None = None
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

    def _own(
        self, name: str, *, writer: bool, busy_ms: int = 30000, autocheckpoint: bool = True
    ) -> sqlite3.Connection:
        """This thread's connection of that name (each thread that reads or writes has its own)."""
        conn: sqlite3.Connection | None = getattr(self._local, name, None)
        if conn is None:
            conn = self._connect(writer=writer, busy_ms=busy_ms)
            if not autocheckpoint:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            setattr(self._local, name, conn)
        return conn

    def _loop_reader(self) -> sqlite3.Connection:
        """The event loop's reading connection: it never waits for a lock (`read`)."""
        return self._own("loop_reader", writer=False, busy_ms=0)

    def _loop_writer(self) -> sqlite3.Connection:
        """The event loop's writing connection: it never waits for a lock (`_drain`), and leaves the checkpoints
        to the writer thread (`_written`)."""
        return self._own("loop_writer", writer=True, busy_ms=0, autocheckpoint=False)

    # ---------------------------------------------------------------------------------------------- reads

    async def read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``read`` on the event loop's thread: an indexed read takes microseconds, less than handing it to a
        thread and back — and a thread that runs SQLite calls beside a busy event loop waits for the GIL after
        each one. A read that would wait for a lock (rare in WAL mode: another connection recovering the log)
        goes to a reader thread, which may wait."""
        try:
            return read(self._loop_reader())
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: read(self._own("reader", writer=False)))

    def _faces_sync(
        self, conn: sqlite3.Connection, tenant_id: uuid.UUID, currency: str, ids: Iterable[uuid.UUID]
    ) -> Faces:
        out, missing = cached_faces(ids, currency)
        faces: list[PromotionFace] = []
        for pid in missing:
            raw = conn.execute(_FACE.sql, _FACE.params(t=tenant_id, p=pid)).fetchall()
            faces.extend(
                PromotionFace(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7]))
                for r in map(_FACE.row, raw)
            )
        remember_faces(faces, currency, out)
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
        try:
            found = await self.read(
                lambda conn: self._fetch_sync(conn, ctx.tenant_id, ctx.currency, contact_id, bit, now)
            )
        except sqlite3.Error as exc:
            log.warning("fastlane.fetch_failed", exc_info=True)
            raise LaneUnavailable from exc
        if found is None:
            raise ContactNotFoundError(f"contact {contact_id} not found")
        return found

    # --------------------------------------------------------------------------------------------- writes

    def _group_on_loop(self, items: Sequence[Write]) -> list[_Outcome] | None:
        """The group in one transaction on the event loop's connection; None when it did not commit (the database
        is locked by another process, or a write failed): nothing of it was written."""
        conn = self._loop_writer()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return None
            raise
        try:
            out: list[_Outcome] = [item(conn) for item in items]
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            return None
        self.groups += 1
        return out

    def _group_in_thread(self, items: Sequence[Write]) -> list[_Outcome]:
        """Runs on the writer thread, whose connection waits for the lock: the group's writes in one transaction;
        if that fails, one by one."""
        conn = self._own("writer", writer=True)
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
            return [self._group_in_thread([item])[0] for item in items]

    def _checkpoint_sync(self) -> None:
        wal_checkpoint(self._own("writer", writer=True))

    def _written(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        """Count writes committed on the loop's connection; every `CHECKPOINT_AFTER` of them, copy the log into
        the database file in the writer thread (a checkpoint waits for the disk: never on the event loop)."""
        self._unchecked += n
        if self._unchecked >= CHECKPOINT_AFTER and (self._checkpoint is None or self._checkpoint.done()):
            self._unchecked = 0
            self._checkpoint = loop.run_in_executor(self._writer, self._checkpoint_sync)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            # Turns of the event loop first, while they bring more writes (up to `GATHER_TURNS`): the requests
            # already in hand queue their writes too, and the group commits them all (the commit and its pages
            # shared). A lone write waits one turn. A stop meanwhile: `_stopped`.
            queued = -1
            for _ in range(GATHER_TURNS):
                if len(self._queue) == queued:
                    break
                queued = len(self._queue)
                await asyncio.sleep(0)
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            items = [item for item, _ in group]
            try:
                async with self.db.write_turn():
                    outcomes = self._group_on_loop(items)
                    if outcomes is None:
                        outcomes = await loop.run_in_executor(self._writer, self._group_in_thread, items)
                    else:
                        self._written(loop, len(items))
            except BaseException as exc:  # cancelled at shutdown, or the executor is gone
                _fail(group, exc if isinstance(exc, Exception) else RuntimeError("stopped"))
                raise
            for (_, fut), outcome in zip(group, outcomes, strict=True):
                if fut.done():  # the request went away; its redeem stands (or not) all the same
                    continue
                if isinstance(outcome, _Failed):
                    fut.set_exception(outcome.error)
                else:
                    fut.set_result(outcome)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The writer stopped (cancelled at shutdown, even before it began, or failed): the writes still queued
        are failed, not left waiting, and never run."""
        if task.cancelled() or task.exception() is not None:
            queued, self._queue = self._queue, []
            _fail(queued, RuntimeError("the SQLite writer stopped"))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside the next group's transaction (it commits with the group), on the event loop's thread
        — or the writer thread's when another process holds the database's write lock, or when the group failed:
        it is then retried there, one write per transaction, so ``fn`` may run twice, the first time rolled back.
        Raises the error that failed it (rolled back), or RuntimeError when the lane stopped."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Outcome] = loop.create_future()
        self._queue.append((fn, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="promoflow-sqlite-writer")
            self._task.add_done_callback(self._stopped)
        return cast(T, await fut)

    async def redeem(
        self, ctx: TenantContext, assignment_id: uuid.UUID, contact_id: uuid.UUID | None, channel: ChannelType,
        now: datetime,
    ) -> tuple[Won, Faces] | None:  # fmt: skip
        item: _Item = (ctx.tenant_id, assignment_id, contact_id, channel, now)
        try:
            row = await self.write(lambda conn: redeem_one(conn, item))
        except (sqlite3.Error, RuntimeError) as exc:
            # The group may or may not have committed: answer "retry" rather than guess.
            raise ServiceUnavailableError("the database did not answer; retry with the same request", retry_after=1) from exc  # fmt: skip
        if row is None:
            return None
        assert isinstance(row, tuple)
        promotion_id, valid_from, valid_to, _ = row
        faces, missing = cached_faces((promotion_id,), ctx.currency)
        if missing:
            faces = await self.read(lambda conn: self._faces_sync(conn, ctx.tenant_id, ctx.currency, missing))
        return (promotion_id, valid_from, valid_to), faces

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
