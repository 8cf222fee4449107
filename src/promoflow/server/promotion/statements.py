"""The statements built from the redemption rule (`redemption.py`) for the paths that redeem many or redeem fast.

- the batch strategies (`batch_for`), one small interface per database: SQLite runs the rule's single-row
  statement for many lines as one prepared statement (its write transactions exclude every other writer,
  `ExclusiveBatch`); PostgreSQL one set-based ``UPDATE … FROM`` the lines with their redemption rows in the same
  statement (`SetBatch`). A caller may add a condition that leaves a line alone (``skip``: a file line that
  replays an earlier redemption), checked in the same statement;
- the raw text of the fast paths, compiled once from the same statements: PostgreSQL's (`PG_FETCH`,
  `PG_REDEEM`, for asyncpg) and SQLite's (`SQLITE_FETCH`, `SQLITE_REDEEM`, `SQLITE_REDEMPTION_ROW`).

Nothing here states a condition of its own: every ``WHERE`` is the rule's (`redeemable`, `shown`), or the
caller's ``skip``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import pydantic_core
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Integer,
    Interval,
    String,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.dialects.sqlite import pysqlite as sqlite_pysqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select, Update

from ...wire.engage import ChannelType
from ..dialect import unindexed
from ..models import assignment, promotion, redemption
from ..models.base import UTCDateTime
from ..tenant.service import TenantContext
from .redemption import Inputs, When, redeem_statement, redeemed_values, shown
from .rules import CHANNEL_BITS

_MICROSECOND = timedelta(microseconds=1)


class RedeemLine(NamedTuple):
    """One redemption of a batch, in the form its line travels in (a tuple: a file's batch makes one per line):
    the assignment and the contact as canonical GUID text (a file's fields are validated to it), the instant
    ``at`` (aware, any offset) and its ``grace``, how far past it an assignment's start still counts
    (`When.started_by` − ``at``, in microseconds; `redemption.ClientInstants`). A file's text goes into the
    PostgreSQL batch's payload as it is, without a `UUID` or a second instant built and written back per line."""

    assignment_id: str
    channel: ChannelType
    at: datetime
    grace: int
    contact_id: str | None = None
    store_external_id: str | None = None
    unique_receipt_id: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, assignment_id: uuid.UUID, channel: ChannelType, moment: When,
           contact_id: uuid.UUID | None = None) -> RedeemLine:  # fmt: skip
        """The line of a redemption given as objects, at ``moment``."""
        grace = (moment.started_by - moment.at) // _MICROSECOND
        return cls(
            str(assignment_id), channel, moment.at, grace, None if contact_id is None else str(contact_id)
        )


def redemption_row(
    ctx: TenantContext,
    now: datetime,
    assignment_id: uuid.UUID,
    at: datetime,
    channel: ChannelType,
    store_external_id: str | None,
    unique_receipt_id: str | None,
    idempotency_key: str | None,
    *,
    seq: int,
    via: str,
) -> dict[str, Any]:
    """The redemption row of one redemption at ``at`` (the assignment's ``seq``-th)."""
    return {
        "id": uuid.uuid4(),
        "tenant_id": ctx.tenant_id,
        "assignment_id": assignment_id,
        "seq": seq,
        "redeemed_at": at,
        "channel": channel.value,
        "store_external_id": store_external_id,
        "unique_receipt_id": unique_receipt_id,
        "via": via,
        "idempotency_key": idempotency_key,
        "created_at": now,
    }


@dataclass(frozen=True)
class LineColumns:
    """A line of a batch as SQL, for a caller's ``skip`` condition: the columns of the lines (PostgreSQL) or the
    line's bound parameters (SQLite), and the batch's tenant."""

    tenant_id: ColumnElement[Any]
    assignment_id: ColumnElement[Any]
    idempotency_key: ColumnElement[Any]
    unique_receipt_id: ColumnElement[Any]


Skip = Callable[[LineColumns], ColumnElement[bool]]
"""A condition under which a batch leaves a line alone (checked before its write, in the same statement)."""


class BatchRedeem(Protocol):
    """Redeem many assignments at once with the rule's conditional write, and write the redemption rows of the
    ones redeemed. Answers the assignments redeemed (as the lines name them: canonical GUID text); a line not
    among them changed nothing (`refusal` says why, unless ``skip`` held for it). No assignment may appear twice
    in ``lines``."""

    async def redeem_many(
        self, conn: AsyncConnection, lines: Sequence[RedeemLine], *, skip: Skip | None = None
    ) -> set[str]: ...


class _Batch:
    def __init__(self, ctx: TenantContext, now: datetime, via: str) -> None:
        self.ctx = ctx
        self.now = now
        self.via = via


class ExclusiveBatch(_Batch):
    """SQLite: the single-row statement run for every line (one prepared statement, ``executemany``). Which
    lines won is read off the redemption counts before and after the write, which is sound only where the
    transaction excludes every other writer (SQLite's write transactions begin IMMEDIATE)."""

    _AT = bindparam("b_at", type_=UTCDateTime())
    _LINE = Inputs(
        at=_AT,
        started_by=bindparam("b_started", type_=UTCDateTime()),
        bit=bindparam("b_bit", type_=Integer()),
        contact=bindparam("b_cid", type_=assignment.c.contact_id.type),
        contact_optional=True,
    )
    _RECEIPT = bindparam("b_receipt", type_=String())

    async def redeem_many(
        self, conn: AsyncConnection, lines: Sequence[RedeemLine], *, skip: Skip | None = None
    ) -> set[str]:
        if conn.dialect.name != "sqlite":
            raise RuntimeError("ExclusiveBatch needs a transaction that excludes other writers (SQLite)")
        if not lines:
            return set()
        ids = [uuid.UUID(line.assignment_id) for line in lines]
        counts = select(assignment.c.id, assignment.c.redemption_count).where(
            unindexed(conn, assignment.c.tenant_id) == self.ctx.tenant_id, assignment.c.id.in_(ids)
        )
        before = {r.id: r.redemption_count for r in await conn.execute(counts)}
        values = redeemed_values(self._AT, bindparam("b_ch"), bindparam("b_store"), self._RECEIPT, self.via)
        aid = bindparam("b_aid", type_=assignment.c.id.type)
        stmt = redeem_statement(self.ctx.tenant_id, aid, self._LINE, values)
        if skip is not None:
            tenant = literal(self.ctx.tenant_id, assignment.c.tenant_id.type)
            stmt = stmt.where(
                ~skip(LineColumns(tenant, aid, bindparam("b_ikey", type_=String()), self._RECEIPT))
            )
        await conn.execute(stmt, [
            {"b_aid": aid, "b_at": line.at, "b_started": line.at + line.grace * _MICROSECOND,
             "b_bit": CHANNEL_BITS[line.channel], "b_cid": uuid.UUID(line.contact_id) if line.contact_id else None,
             "b_ch": line.channel.value, "b_store": line.store_external_id, "b_receipt": line.unique_receipt_id,
             "b_ikey": line.idempotency_key}
            for aid, line in zip(ids, lines, strict=True)
        ])  # fmt: skip
        after = {r.id: r.redemption_count for r in await conn.execute(counts)}
        won = [(aid, line) for aid, line in zip(ids, lines, strict=True)
               if aid in before and after[aid] == before[aid] + 1]  # fmt: skip
        if won:
            await conn.execute(
                insert(redemption),
                [
                    redemption_row(self.ctx, self.now, aid, line.at, line.channel, line.store_external_id,
                                   line.unique_receipt_id, line.idempotency_key, seq=after[aid], via=self.via)
                    for aid, line in won
                ],
            )  # fmt: skip
        return {line.assignment_id for _, line in won}


# The lines of a PostgreSQL batch travel as one JSON array of arrays: one parameter that PostgreSQL parses itself,
# instead of one array parameter per column that the driver encodes element by element. MATERIALIZED: each field
# is taken out of its JSON element and cast once; inlined, every use in the UPDATE's conditions, SET and
# RETURNING took it out again. A line's ``started_by`` travels as its distance from ``at`` in microseconds
# (``grace``): a number, not a second instant to format and to parse.
_PG_LINES = (
    text(
        "SELECT (e->>0)::uuid AS id, (e->>1)::timestamptz AS at, (e->>2)::bigint AS grace, e->>3 AS ch,"
        " (e->>4)::int AS bit, e->>5 AS store, e->>6 AS receipt, (e->>7)::uuid AS contact, e->>8 AS ikey"
        " FROM json_array_elements(CAST(:lines AS json)) AS e"
    )
    .columns(
        id=assignment.c.id.type,
        at=UTCDateTime(),
        grace=BigInteger(),
        ch=String(),
        bit=Integer(),
        store=String(),
        receipt=String(),
        contact=assignment.c.contact_id.type,
        ikey=String(),
    )  # fmt: skip
    .cte("line")
    .prefix_with("MATERIALIZED")
)


def _pg_batch(via: str, skip: Skip | None) -> Select[Any]:
    """Every line's conditional write (joined by primary key, one probe each) and its redemption row, in one
    statement; answers the assignments redeemed. A line for which ``skip`` holds is left out before the write."""
    line = _PG_LINES
    tenant = bindparam("t", type_=assignment.c.tenant_id.type)
    started_by = line.c.at + line.c.grace * literal(_MICROSECOND, Interval())
    inputs = Inputs(at=line.c.at, started_by=started_by, bit=line.c.bit, contact=line.c.contact,
                    contact_optional=True)  # fmt: skip
    write = redeem_statement(
        tenant, line.c.id, inputs, redeemed_values(line.c.at, line.c.ch, line.c.store, line.c.receipt, via)
    )
    if skip is not None:
        write = write.where(~skip(LineColumns(tenant, line.c.id, line.c.ikey, line.c.receipt)))
    won = (
        write.returning(assignment.c.id, assignment.c.redemption_count, line.c.at, line.c.ch, line.c.store,
                        line.c.receipt, line.c.ikey)
        .cte("won")
    )  # fmt: skip
    rows = insert(redemption).from_select(
        ["id", "tenant_id", "assignment_id", "seq", "redeemed_at", "channel", "store_external_id",
         "unique_receipt_id", "via", "idempotency_key", "created_at"],
        select(func.gen_random_uuid(), tenant, won.c.id, won.c.redemption_count, won.c.at, won.c.ch, won.c.store,
               won.c.receipt, literal(via), won.c.ikey, bindparam("now", type_=UTCDateTime())),
    ).cte("rows")  # fmt: skip
    # The ids as text, as the lines name them (no UUID built per line to answer).
    return select(cast(won.c.id, Text)).add_cte(rows)


class SetBatch(_Batch):
    """PostgreSQL: one set-based statement for the whole batch (`_pg_batch`), exactly once under concurrency as
    the single-row statement is: each line's UPDATE re-checks its conditions on the row it locks."""

    _statements: dict[tuple[str, Skip | None], Select[Any]] = {}

    async def redeem_many(
        self, conn: AsyncConnection, lines: Sequence[RedeemLine], *, skip: Skip | None = None
    ) -> set[str]:
        if not lines:
            return set()
        stmt = self._statements.get((self.via, skip))
        if stmt is None:
            stmt = self._statements[self.via, skip] = _pg_batch(self.via, skip)
        payload = [
            [aid, at.isoformat(), grace, channel.value, CHANNEL_BITS[channel], store, receipt, contact, ikey]
            for aid, channel, at, grace, contact, store, receipt, ikey in lines
        ]
        params = {"t": self.ctx.tenant_id, "now": self.now, "lines": json.dumps(payload)}
        return set((await conn.execute(stmt, params)).scalars())


def batch_for(conn: AsyncConnection, ctx: TenantContext, now: datetime, *, via: str) -> BatchRedeem:
    """The batch strategy of the connection's database, for this tenant's redemptions ``via`` a channel of entry
    (e.g. "file")."""
    return (SetBatch if conn.dialect.name == "postgresql" else ExclusiveBatch)(ctx, now, via)


# ---------------------------------------------------------------------- the fast paths' raw statements


@dataclass(frozen=True)
class PgText:
    """A statement compiled once to PostgreSQL text (psycopg's ``%(name)s`` parameters), for a raw connection;
    ``params`` adds the constants the statement was built with."""

    sql: str
    defaults: Mapping[str, Any]

    def params(self, **values: Any) -> dict[str, Any]:
        return {**self.defaults, **values}


def compile_pg(stmt: Any) -> PgText:
    compiled = stmt.compile(dialect=pg_psycopg.dialect())
    return PgText(str(compiled), dict(compiled.params))


@dataclass(frozen=True)
class AsyncpgText:
    """A statement compiled once to PostgreSQL text with asyncpg's numbered parameters (``$1``, ``$2``…): ``args``
    puts the values, and the constants the statement was built with, in the order the text numbers them."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    def args(self, **values: Any) -> list[Any]:
        return [values[n] if n in values else self.defaults[n] for n in self.names]


def compile_asyncpg(stmt: Any) -> AsyncpgText:
    compiled = stmt.compile(dialect=pg_asyncpg.dialect())
    return AsyncpgText(str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params))


_SQLITE = sqlite_pysqlite.dialect(paramstyle="named")


@dataclass(frozen=True)
class SqliteText:
    """A statement compiled once to SQLite text (``:name`` parameters) for a raw `sqlite3` connection, with the
    column types' conversions that SQLAlchemy would apply: ``params`` converts the values (a UUID to its stored
    hex, an aware datetime to naive UTC text, …) and adds the statement's constants; ``row`` converts a result
    row back (text → UUID, datetime, JSON)."""

    sql: str
    binds: Mapping[str, Callable[[Any], Any] | None]
    defaults: Mapping[str, Any]
    results: tuple[Callable[[Any], Any] | None, ...]

    def params(self, **values: Any) -> dict[str, Any]:
        out = dict(self.defaults)
        for name, value in values.items():
            convert = self.binds.get(name)
            out[name] = value if convert is None or value is None else convert(value)
        return out

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple([v if f is None or v is None else f(v) for f, v in zip(self.results, raw, strict=True)])


def utc_text(value: datetime) -> str:
    """An aware datetime as SQLite keeps a `UTCDateTime`: naive UTC text with microseconds (what SQLAlchemy's
    processors write, at a third of their cost: the fast paths convert one or two per request)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTCDateTime column")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def utc_of_text(value: str) -> datetime:
    """A `UTCDateTime` read back from SQLite's text (aware UTC), as SQLAlchemy's processors would."""
    return datetime.fromisoformat(value + "+00:00")


def json_text(value: Any) -> str:
    """A `JSON` column's value as SQLite keeps it: JSON text (``JSON.NULL``: JSON null). Through pydantic_core, at
    a fifth of `json.dumps`' time (SQLAlchemy's processor; the quick writes convert two or three values a write);
    what pydantic_core refuses — a lone surrogate — as `json.dumps` writes it."""
    if value is JSON.NULL:
        return "null"
    try:
        return pydantic_core.to_json(value, inf_nan_mode="constants").decode()
    except pydantic_core.PydanticSerializationError:
        return json.dumps(value)


def json_of_text(value: Any) -> Any:
    """A `JSON` column's value read back (a number SQLite hands back as such, as SQLAlchemy's processor does)."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return pydantic_core.from_json(value)
    except ValueError:  # what pydantic_core refuses (a lone surrogate's escape), as `json.loads` reads it
        return json.loads(value)


def _bind_processor(type_: Any) -> Callable[[Any], Any] | None:
    if isinstance(type_, UTCDateTime):
        return utc_text
    if isinstance(type_, JSON):
        return json_text
    return type_.dialect_impl(_SQLITE).bind_processor(_SQLITE)  # type: ignore[no-any-return]


def _result_processor(type_: Any) -> Callable[[Any], Any] | None:
    if isinstance(type_, UTCDateTime):
        return utc_of_text
    if isinstance(type_, JSON):
        return json_of_text
    return type_.dialect_impl(_SQLITE).result_processor(_SQLITE, None)  # type: ignore[no-any-return]


def compile_sqlite(stmt: Any) -> SqliteText:
    compiled = stmt.compile(dialect=_SQLITE)
    binds = {name: _bind_processor(bp.type) for bp, name in compiled.bind_names.items()}
    defaults = {}
    for name, value in compiled.params.items():
        convert = binds.get(name)
        defaults[name] = value if value is None or convert is None else convert(value)
    columns = getattr(stmt, "exported_columns", ())
    results = tuple(_result_processor(c.type) for c in columns)
    return SqliteText(str(compiled), binds, defaults, results)


_P_NOW = bindparam("now", type_=UTCDateTime())
_P_TENANT = bindparam("t", type_=assignment.c.tenant_id.type)
_P_CONTACT = bindparam("c", type_=assignment.c.contact_id.type)
_P_BIT = bindparam("bit", type_=Integer())
_P_ASSIGNMENT = bindparam("a", type_=assignment.c.id.type)
_P_CHANNEL = bindparam("ch", type_=String())


def _fetch(channel: bool) -> Select[Any]:
    """The plain fetch: the contact's assignments shown now (for one channel), oldest first."""
    inputs = Inputs(at=_P_NOW, started_by=_P_NOW, bit=_P_BIT if channel else None, contact=_P_CONTACT)
    return (
        select(assignment.c.id, assignment.c.promotion_id, assignment.c.valid_from, assignment.c.valid_to)
        .join(promotion, promotion.c.id == assignment.c.promotion_id)
        .where(assignment.c.tenant_id == _P_TENANT, *shown(inputs))
        .order_by(assignment.c.created_at, assignment.c.id)
    )


def _api_redeem(tenant: Any, assignment_id: Any, at: Any, channel: Any, bit: Any, contact: Any,
                *, contact_optional: bool = False) -> Update:  # fmt: skip
    """The plain API redeem at ``at`` (the server's clock): the rule's conditional write, nothing from a store."""
    inputs = Inputs(at=at, started_by=at, bit=bit, contact=contact, contact_optional=contact_optional)
    return redeem_statement(tenant, assignment_id, inputs, redeemed_values(at, channel, None, None, "api"))


def _redeem_plain(contact_scoped: bool) -> Update:
    return _api_redeem(
        _P_TENANT, _P_ASSIGNMENT, _P_NOW, _P_CHANNEL, _P_BIT, _P_CONTACT if contact_scoped else None
    )


# The API redeems of concurrent requests, gathered (`fastlane.PgLane`): one line per redeem, each with its own
# tenant, contact (NULL: not on the contact-scoped path), channel and instant.
_API_LINES = (
    text(
        "SELECT (e->>0)::uuid AS id, (e->>1)::uuid AS t, (e->>2)::uuid AS contact, e->>3 AS ch, (e->>4)::int AS bit,"
        " (e->>5)::timestamptz AS at FROM json_array_elements(CAST(:lines AS json)) AS e"
    )
    .columns(
        id=assignment.c.id.type,
        t=assignment.c.tenant_id.type,
        contact=assignment.c.contact_id.type,
        ch=String(),
        bit=Integer(),
        at=UTCDateTime(),
    )  # fmt: skip
    .cte("line")
    .prefix_with("MATERIALIZED")
)


def _pg_redeem() -> AsyncpgText:
    """PostgreSQL: the plain API redeem (`_api_redeem`, as SQLite's) of every line of a batch, and
    each won line's redemption row, in one statement (joined by primary key, one probe each, as `_pg_batch`);
    answers each redeemed assignment with its promotion and validity. A batch names an assignment once."""
    line = _API_LINES
    won = (
        _api_redeem(line.c.t, line.c.id, line.c.at, line.c.ch, line.c.bit, line.c.contact, contact_optional=True)
        .returning(assignment.c.id, assignment.c.tenant_id, assignment.c.promotion_id, assignment.c.valid_from,
                   assignment.c.valid_to, assignment.c.redemption_count, line.c.at, line.c.ch)
        .cte("won")
    )  # fmt: skip
    rows = insert(redemption).from_select(
        ["id", "tenant_id", "assignment_id", "seq", "redeemed_at", "channel", "via", "created_at"],
        select(func.gen_random_uuid(), won.c.tenant_id, won.c.id, won.c.redemption_count, won.c.at, won.c.ch,
               literal("api"), won.c.at),
    ).cte("rows")  # fmt: skip
    return compile_asyncpg(
        select(won.c.id, won.c.promotion_id, won.c.valid_from, won.c.valid_to).add_cte(rows)
    )


# The fast lane runs these on asyncpg (`fastlane.PgLane`).
PG_FETCH = {
    False: compile_asyncpg(_fetch(False)),
    True: compile_asyncpg(_fetch(True)),
}  # by: with a channel filter
PG_REDEEM = _pg_redeem()  # a batch of API redeems (one line: the single redeem)

# SQLite has no data-modifying CTE: the conditional write (its RETURNING row decides) and then, for a won row,
# its redemption row, in the same transaction.
SQLITE_FETCH = {False: compile_sqlite(_fetch(False)), True: compile_sqlite(_fetch(True))}
# The redeemed assignment's promotion, validity and redemption count (the seq of its redemption row).
SQLITE_REDEEM = {
    scoped: compile_sqlite(
        _redeem_plain(scoped).returning(
            assignment.c.promotion_id,
            assignment.c.valid_from,
            assignment.c.valid_to,
            assignment.c.redemption_count,
        )
    )
    for scoped in (False, True)
}  # by: on the contact-scoped path
SQLITE_REDEMPTION_ROW = compile_sqlite(
    insert(redemption).values(
        id=bindparam("id", type_=redemption.c.id.type), tenant_id=_P_TENANT, assignment_id=_P_ASSIGNMENT,
        seq=bindparam("seq", type_=Integer()), redeemed_at=_P_NOW, channel=_P_CHANNEL, via="api", created_at=_P_NOW,
    )
)  # fmt: skip
