"""Member numbers (the default ``customKey``) without a row the whole tenant shares (issue 16).

A number is unique within its tenant and has at least 8 digits (zero-padded: ``00000042``). Numbers are **not**
dense and **not** in creation order: a gap means nothing.

The counter is one row per tenant in ``member_number_counter`` (the highest number handed out or reserved).

- **PostgreSQL**: each process reserves a block of `BLOCK` numbers at a time with one upsert in autocommit —
  outside the contact's transaction, so the counter row is locked only for that one statement, once per `BLOCK`
  creates per process, and a slow contact transaction holds nothing another create needs. The routed create
  (`next_member_number`, inside its transaction) reserves on a connection opened for the reservation and closed
  after it (not taken from the request pool: a request that holds a pooled connection must never wait for a
  second one); the quick create (`block_number`), whose statement is its own transaction, on the connection of
  the fast lane's (asyncpg) pool it holds. Numbers of a block that a process does not use (it stops, or a create rolls
  back) are never handed out.
- **SQLite** (one writer at a time anyway): the number is taken in the contact's own transaction with the same
  upsert, one at a time, so it rolls back with the create; SQLite's write lock makes it correct across processes.

The last guard is the unique index on (tenant_id, member_number): `ContactService.create` skips a number that a
contact already holds (one given explicitly by a client).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import member_number_counter

log = logging.getLogger("promoflow.contacts")

BLOCK = 100
"""How many numbers a PostgreSQL process reserves at a time."""

_UPSERT = (
    "INSERT INTO member_number_counter (tenant_id, next_value) VALUES ({t}, {n}) "
    "ON CONFLICT (tenant_id) DO UPDATE SET next_value = member_number_counter.next_value + {n} "
    "RETURNING next_value"
)
_UPSERT_PG = _UPSERT.format(t="%(t)s", n="%(n)s")
_UPSERT_ASYNCPG = _UPSERT.format(t="$1", n="$2::integer")

# Per (database, tenant): the process's current block as [next, end). One event loop owns a process's requests;
# the lock (one per loop) only keeps concurrent creates from reserving several blocks when one runs out.
_blocks: dict[tuple[str, uuid.UUID], list[int]] = {}
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_conninfo: dict[URL, str] = {}


def format_number(value: int) -> str:
    return f"{value:08d}"


async def next_member_number(conn: AsyncConnection, tenant_id: uuid.UUID) -> str:
    """A member number no contact of the tenant has been given by this counter (see the module text)."""
    if conn.dialect.name != "postgresql":
        return format_number(await _advance(conn, tenant_id, 1))
    info = _conninfo_of(conn.engine.url)
    return format_number(await _from_block(info, tenant_id, lambda: _reserve(conn, info, tenant_id)))


async def block_number(url: URL, tenant_id: uuid.UUID, pooled: asyncpg.Connection) -> str:
    """PostgreSQL: the next number of this process's block for the tenant (database ``url``), shared with
    `next_member_number`; a new block is reserved on ``pooled``, a connection of the fast lane's pool the caller
    holds (outside any transaction: the statement is its own)."""

    async def reserve() -> list[int]:
        end = int(await pooled.fetchval(_UPSERT_ASYNCPG, tenant_id, BLOCK))
        return [end - BLOCK + 1, end + 1]

    return format_number(await _from_block(_conninfo_of(url), tenant_id, reserve))


async def _from_block(info: str, tenant_id: uuid.UUID, reserve: Callable[[], Awaitable[list[int]]]) -> int:
    key = (info, tenant_id)
    block = _blocks.get(key)
    if block is None or block[0] >= block[1]:
        async with _lock(key):
            block = _blocks.get(key)
            if block is None or block[0] >= block[1]:
                block = _blocks[key] = await reserve()
    value = block[0]
    block[0] += 1
    return value


def forget() -> None:
    """Drop every reserved block (tests that recreate a database under the same URL)."""
    _blocks.clear()


def _conninfo_of(url: URL) -> str:
    info = _conninfo.get(url)
    if info is None:
        info = url.set(drivername="postgresql").render_as_string(hide_password=False)
        _conninfo[url] = info
    return info


def _lock(key: Any) -> asyncio.Lock:
    locks = _locks.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


async def _upsert(conn: psycopg.AsyncConnection[Any], tenant_id: uuid.UUID) -> list[int]:
    """Reserve the next `BLOCK` numbers with one statement on an autocommit connection: [first, end)."""
    size = BLOCK
    cur = await conn.execute(_UPSERT_PG, {"t": tenant_id, "n": size})
    row = await cur.fetchone()
    assert row is not None
    end = int(row[0])
    return [end - size + 1, end + 1]


async def _reserve(conn: AsyncConnection, info: str, tenant_id: uuid.UUID) -> list[int]:
    try:
        async with await psycopg.AsyncConnection.connect(info, autocommit=True) as own:
            return await _upsert(own, tenant_id)
    except psycopg.OperationalError:
        # No second connection to be had (the server is at max_connections): take one number in the create's
        # own transaction instead. Correct, but that create holds the counter row until it commits.
        log.warning("contact.number_block_unavailable tenant=%s", tenant_id, exc_info=True)
        end = await _advance(conn, tenant_id, 1)
        return [end, end + 1]


async def _advance(conn: AsyncConnection, tenant_id: uuid.UUID, n: int) -> int:
    """The counter advanced by ``n`` in ``conn``'s transaction (the row is created on first use)."""
    c = member_number_counter
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(c).values(tenant_id=tenant_id, next_value=n)
    stmt = stmt.on_conflict_do_update(index_elements=[c.c.tenant_id], set_={"next_value": c.c.next_value + n})
    return int(await conn.scalar(stmt.returning(c.c.next_value)) or 0)
