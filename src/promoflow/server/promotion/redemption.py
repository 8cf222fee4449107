"""The redemption rule, in one place: when an assignment may be redeemed, and so when a contact is shown it.

An assignment may be redeemed once, inside its validity, on a channel its promotion allows. The rule is `RULE`, a
list of named conditions; each has its SQL expression over the assignment and its promotion, and the error (with
its explanation) that a redeem answers when it fails. Everything that decides "whether" or says "why not" is built
from that one list:

- the fetch filter (`shown`): a contact's assignments that pass every condition now — what the fetch lists;
- the single-row redeem (`redeem_statement`): one conditional ``UPDATE … WHERE <every condition>``. Exactly once:
  whichever transaction gets there first changes the row; every other sees no row to change and is refused;
- the batch strategies (`batch_for`), one small interface per database: SQLite runs that same statement for many
  lines as one prepared statement (its write transactions exclude every other writer, `ExclusiveBatch`);
  PostgreSQL one set-based ``UPDATE … FROM`` the lines with their redemption rows in the same statement
  (`SetBatch`);
- the PostgreSQL text of the fast path (`PG_FETCH`, `PG_REDEEM`), compiled once from the same statements;
- the explanation (`explain`, public: the admin UI asks "why is this promotion not shown to this customer?", and
  `refusal`, the error of a refused redeem): the conditions evaluated as columns of one SELECT, so "why not" can
  never disagree with "whether".

When: the fetch and an API redeem compare validity with the server's clock. An instant a client's clock gave
(`redeemedOn`, a receipt's `createdDate`, a file's `redeemedOn`) is compared at the precision it was sent (a
whole second covers that second) and with the tenant's clock-skew tolerance (`clockSkewSeconds`, default 300):
it may lie that much before the assignment became valid, and that much in the future (`when`).

A deactivated promotion is not a condition: its assignments stay valid (A5, as in Engage). `explain` reports the
deactivation as a fact (`Explanation.promotion_deactivated_at`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select, Update

from ...kit.timeutil import iso
from ...wire.engage import ChannelType
from ..dialect import unindexed
from ..exceptions import PromoflowError
from ..models import assignment, promotion, redemption
from ..models.base import UTCDateTime
from ..tenant.service import TenantContext
from .errors import (
    InvalidRedeemedOnError,
    PromotionAlreadyRedeemedError,
    PromotionExpiredError,
    PromotionNotAssociatedWithContactError,
    PromotionNotFoundError,
    PromotionNotRedeemableError,
    PromotionNotValidForRedemptionChannelError,
    PromotionNotYetValidError,
)
from .rules import CHANNEL_BITS

# ------------------------------------------------------------------------------------------------- when


@dataclass(frozen=True)
class When:
    """The instant a redemption (or a fetch) is judged at. ``at`` is stored and compared with the end of validity;
    ``started_by`` is the latest ``valid_from`` that counts as started: ``at`` itself for the server's clock, later
    for an instant from a client's clock (see `when`)."""

    at: datetime
    started_by: datetime

    @classmethod
    def server(cls, now: datetime) -> When:
        return cls(now, now)


def when(ctx: TenantContext, now: datetime, client_at: datetime | None) -> When:
    """The instant of a redemption: the server's ``now``, or the instant a client's clock gave (``redeemedOn``,
    ``createdDate``), refused when it is out of range or further in the future than the tenant's clock skew.
    A client's instant counts as started up to the skew, plus the rest of its second when it was sent at second
    precision (Engage's timestamps are: a receipt in the same second as the assignment is not before it)."""
    if client_at is None:
        return When.server(now)
    try:
        # An offset such as +14:00 on year 1 (or 9999) has no UTC instant: bad input, not a server error.
        at = client_at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidRedeemedOnError("redeemedOn is out of range") from exc
    skew = ctx.clock_skew
    if at > now + skew:
        raise InvalidRedeemedOnError("redeemedOn is in the future")
    whole_second = timedelta(seconds=1) - timedelta(microseconds=1) if at.microsecond == 0 else timedelta(0)
    return When(at, at + whole_second + skew)


# ------------------------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Inputs:
    """What the conditions compare with, as SQL expressions: bound values, or the columns of a batch's lines.
    ``bit`` None: any channel (a fetch without a channel filter); ``contact`` None: any contact; with
    ``contact_optional`` a NULL contact (a batch line without one) means any contact."""

    at: ColumnElement[Any]
    started_by: ColumnElement[Any]
    bit: ColumnElement[Any] | None = None
    contact: ColumnElement[Any] | None = None
    contact_optional: bool = False

    @classmethod
    def bound(cls, moment: When, channel: ChannelType | None, contact_id: uuid.UUID | None) -> Inputs:
        return cls(
            at=literal(moment.at, UTCDateTime()),
            started_by=literal(moment.started_by, UTCDateTime()),
            bit=None if channel is None else literal(CHANNEL_BITS[channel], Integer()),
            contact=None if contact_id is None else literal(contact_id, assignment.c.contact_id.type),
        )


class Reason(StrEnum):
    """Why an assignment is not redeemable (nor shown): the names of the rule's conditions."""

    DELETED = "deleted"
    OTHER_CONTACT = "otherContact"
    DRAFT = "draft"
    REDEEMED = "redeemed"
    CHANNEL = "channel"
    EXPIRED = "expired"
    NOT_YET_VALID = "notYetValid"


@dataclass(frozen=True)
class Facts:
    """An assignment's state, as the explanation reads it: its validity, its redemption (when, channel, store,
    receipt), its deletion, and its promotion's activation (None: a draft) and deactivation (a fact only: a
    deactivated promotion's assignments stay valid)."""

    assignment_id: uuid.UUID
    promotion_id: uuid.UUID
    contact_id: uuid.UUID
    valid_from: datetime
    valid_to: datetime | None
    redeemed_at: datetime | None
    redeemed_channel: str | None
    redeemed_store: str | None
    redeemed_receipt_id: str | None
    deleted_at: datetime | None
    promotion_activated_at: datetime | None
    promotion_deactivated_at: datetime | None


@dataclass(frozen=True)
class Condition:
    """One condition of the rule: its name, the table it reads (a promotion's are checked in one EXISTS by the
    UPDATE), its SQL (None where it does not apply to the inputs), and the error naming it when it fails.
    ``lifecycle`` conditions are the ones the fetch's ``includeRedeemed`` relaxes."""

    reason: Reason
    table: Table
    sql: Callable[[Inputs], ColumnElement[bool] | None]
    refuse: Callable[[Facts, ChannelType | None, ZoneInfo], PromoflowError]
    lifecycle: bool = False


def _contact(i: Inputs) -> ColumnElement[bool] | None:
    if i.contact is None:
        return None
    same = assignment.c.contact_id == i.contact
    return or_(i.contact.is_(None), same) if i.contact_optional else same


def _channel(i: Inputs) -> ColumnElement[bool] | None:
    return None if i.bit is None else promotion.c.channel_mask.op("&")(i.bit) != 0


RULE: tuple[Condition, ...] = (
    Condition(
        Reason.DELETED, assignment, lambda i: assignment.c.deleted_at.is_(None),
        lambda f, ch, tz: PromotionNotFoundError(f"promotion {f.assignment_id} not found"),
    ),
    Condition(
        Reason.OTHER_CONTACT, assignment, _contact,
        lambda f, ch, tz: PromotionNotAssociatedWithContactError("the promotion is not assigned to this contact"),
    ),
    Condition(
        Reason.DRAFT, promotion, lambda i: promotion.c.activated_at.is_not(None),
        lambda f, ch, tz: PromotionNotRedeemableError("the promotion is a draft"),
    ),
    Condition(
        Reason.REDEEMED, assignment, lambda i: assignment.c.redeemed_at.is_(None),
        lambda f, ch, tz: PromotionAlreadyRedeemedError(f, tz), lifecycle=True,
    ),
    Condition(
        Reason.CHANNEL, promotion, _channel,
        lambda f, ch, tz: PromotionNotValidForRedemptionChannelError(
            f"the promotion cannot be redeemed in channel {ch.value if ch else None}"
        ),
    ),
    Condition(
        Reason.EXPIRED, assignment, lambda i: or_(assignment.c.valid_to.is_(None), assignment.c.valid_to >= i.at),
        lambda f, ch, tz: PromotionExpiredError(f"the promotion expired at {iso(f.valid_to, tz)}"), lifecycle=True,
    ),
    Condition(
        Reason.NOT_YET_VALID, assignment, lambda i: assignment.c.valid_from <= i.started_by,
        lambda f, ch, tz: PromotionNotYetValidError(f"the promotion is valid from {iso(f.valid_from, tz)}"),
        lifecycle=True,
    ),
)  # fmt: skip


def _applicable(
    inputs: Inputs, *, include_lifecycle: bool = True
) -> list[tuple[Condition, ColumnElement[bool]]]:
    out = []
    for cond in RULE:
        if cond.lifecycle and not include_lifecycle:
            continue
        expr = cond.sql(inputs)
        if expr is not None:
            out.append((cond, expr))
    return out


def redeemable(inputs: Inputs) -> list[ColumnElement[bool]]:
    """The rule as conditions on the assignment table alone (the promotion's in one correlated EXISTS): for a
    statement whose FROM has the assignment but not its promotion (the UPDATE, a look-up by id)."""
    checks = _applicable(inputs)
    own = [expr for cond, expr in checks if cond.table is assignment]
    of_promotion = [expr for cond, expr in checks if cond.table is promotion]
    exists = select(promotion.c.id).where(promotion.c.id == assignment.c.promotion_id, *of_promotion).exists()
    return [*own, exists]


def shown(inputs: Inputs, *, include_redeemed: bool = False) -> list[ColumnElement[bool]]:
    """The fetch filter, for a SELECT that joins the assignment to its promotion. ``include_redeemed`` (the
    extension) keeps redeemed, expired and not yet valid assignments."""
    return [expr for _, expr in _applicable(inputs, include_lifecycle=not include_redeemed)]


# ------------------------------------------------------------------------------------------------ statements


def redeemed_values(at: Any, channel: Any, store: Any, receipt: Any, via: Any) -> dict[str, Any]:
    """What a redemption sets on its assignment."""
    return {
        "redeemed_at": at,
        "redeemed_channel": channel,
        "redeemed_store": store,
        "redeemed_receipt_id": receipt,
        "redeemed_via": via,
        "redemption_count": assignment.c.redemption_count + 1,
    }


def redeem_statement(tenant_id: Any, assignment_id: Any, inputs: Inputs, values: Mapping[str, Any]) -> Update:
    """The one conditional write that redeems an assignment."""
    return (
        update(assignment)
        .where(assignment.c.id == assignment_id, assignment.c.tenant_id == tenant_id, *redeemable(inputs))
        .values(dict(values))
    )


@dataclass(frozen=True)
class RedeemLine:
    """One redemption of a batch."""

    assignment_id: uuid.UUID
    channel: ChannelType
    moment: When
    contact_id: uuid.UUID | None = None
    store_external_id: str | None = None
    unique_receipt_id: str | None = None
    idempotency_key: str | None = None


def redemption_row(ctx: TenantContext, now: datetime, line: RedeemLine, seq: int, via: str) -> dict[str, Any]:
    """The redemption row of one redemption (the assignment's ``seq``-th)."""
    return {
        "id": uuid.uuid4(),
        "tenant_id": ctx.tenant_id,
        "assignment_id": line.assignment_id,
        "seq": seq,
        "redeemed_at": line.moment.at,
        "channel": line.channel.value,
        "store_external_id": line.store_external_id,
        "unique_receipt_id": line.unique_receipt_id,
        "via": via,
        "idempotency_key": line.idempotency_key,
        "created_at": now,
    }


class BatchRedeem(Protocol):
    """Redeem many assignments at once with the rule's conditional write, and write the redemption rows of the
    ones redeemed. Answers the assignments redeemed; a line not among them changed nothing (`refusal` says
    why). No assignment may appear twice in ``lines``."""

    async def redeem_many(self, conn: AsyncConnection, lines: Sequence[RedeemLine]) -> set[uuid.UUID]: ...


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

    async def redeem_many(self, conn: AsyncConnection, lines: Sequence[RedeemLine]) -> set[uuid.UUID]:
        if conn.dialect.name != "sqlite":
            raise RuntimeError("ExclusiveBatch needs a transaction that excludes other writers (SQLite)")
        if not lines:
            return set()
        ids = [line.assignment_id for line in lines]
        counts = select(assignment.c.id, assignment.c.redemption_count).where(
            unindexed(conn, assignment.c.tenant_id) == self.ctx.tenant_id, assignment.c.id.in_(ids)
        )
        before = {r.id: r.redemption_count for r in await conn.execute(counts)}
        values = redeemed_values(
            self._AT, bindparam("b_ch"), bindparam("b_store"), bindparam("b_receipt"), self.via
        )
        stmt = redeem_statement(
            self.ctx.tenant_id, bindparam("b_aid", type_=assignment.c.id.type), self._LINE, values
        )
        await conn.execute(stmt, [
            {"b_aid": line.assignment_id, "b_at": line.moment.at, "b_started": line.moment.started_by,
             "b_bit": CHANNEL_BITS[line.channel], "b_cid": line.contact_id, "b_ch": line.channel.value,
             "b_store": line.store_external_id, "b_receipt": line.unique_receipt_id}
            for line in lines
        ])  # fmt: skip
        after = {r.id: r.redemption_count for r in await conn.execute(counts)}
        won = [line for line in lines if line.assignment_id in before
               and after[line.assignment_id] == before[line.assignment_id] + 1]  # fmt: skip
        if won:
            await conn.execute(
                insert(redemption),
                [
                    redemption_row(self.ctx, self.now, line, after[line.assignment_id], self.via)
                    for line in won
                ],
            )
        return {line.assignment_id for line in won}


# The lines of a PostgreSQL batch travel as one JSON array of arrays: one parameter that PostgreSQL parses itself,
# instead of one array parameter per column that the driver encodes element by element.
_PG_LINES = (
    text(
        "SELECT (e->>0)::uuid AS id, (e->>1)::timestamptz AS at, (e->>2)::timestamptz AS started_by, e->>3 AS ch,"
        " (e->>4)::int AS bit, e->>5 AS store, e->>6 AS receipt, (e->>7)::uuid AS contact, e->>8 AS ikey"
        " FROM json_array_elements(CAST(:lines AS json)) AS e"
    )
    .columns(
        id=assignment.c.id.type,
        at=UTCDateTime(),
        started_by=UTCDateTime(),
        ch=String(),
        bit=Integer(),
        store=String(),
        receipt=String(),
        contact=assignment.c.contact_id.type,
        ikey=String(),
    )  # fmt: skip
    .cte("line")
)


def _pg_batch(via: str) -> Select[Any]:
    """Every line's conditional write (joined by primary key, one probe each) and its redemption row, in one
    statement; answers the assignments redeemed."""
    line = _PG_LINES
    inputs = Inputs(at=line.c.at, started_by=line.c.started_by, bit=line.c.bit, contact=line.c.contact,
                    contact_optional=True)  # fmt: skip
    won = (
        redeem_statement(
            bindparam("t", type_=assignment.c.tenant_id.type), line.c.id, inputs,
            redeemed_values(line.c.at, line.c.ch, line.c.store, line.c.receipt, via),
        )
        .returning(assignment.c.id, assignment.c.redemption_count, line.c.at, line.c.ch, line.c.store,
                   line.c.receipt, line.c.ikey)
        .cte("won")
    )  # fmt: skip
    rows = insert(redemption).from_select(
        ["id", "tenant_id", "assignment_id", "seq", "redeemed_at", "channel", "store_external_id",
         "unique_receipt_id", "via", "idempotency_key", "created_at"],
        select(func.gen_random_uuid(), bindparam("t", type_=assignment.c.tenant_id.type), won.c.id,
               won.c.redemption_count, won.c.at, won.c.ch, won.c.store, won.c.receipt, literal(via), won.c.ikey,
               bindparam("now", type_=UTCDateTime())),
    ).cte("rows")  # fmt: skip
    return select(won.c.id).add_cte(rows)


class SetBatch(_Batch):
    """PostgreSQL: one set-based statement for the whole batch (`_pg_batch`), exactly once under concurrency as
    the single-row statement is: each line's UPDATE re-checks its conditions on the row it locks."""

    _statements: dict[str, Select[Any]] = {}

    async def redeem_many(self, conn: AsyncConnection, lines: Sequence[RedeemLine]) -> set[uuid.UUID]:
        if not lines:
            return set()
        stmt = self._statements.get(self.via)
        if stmt is None:
            stmt = self._statements[self.via] = _pg_batch(self.via)
        payload = [
            [str(line.assignment_id), line.moment.at.isoformat(), line.moment.started_by.isoformat(),
             line.channel.value, CHANNEL_BITS[line.channel], line.store_external_id, line.unique_receipt_id,
             str(line.contact_id) if line.contact_id else None, line.idempotency_key]
            for line in lines
        ]  # fmt: skip
        params = {"t": self.ctx.tenant_id, "now": self.now, "lines": json.dumps(payload)}
        return set((await conn.execute(stmt, params)).scalars())


def batch_for(conn: AsyncConnection, ctx: TenantContext, now: datetime, *, via: str) -> BatchRedeem:
    """The batch strategy of the connection's database, for this tenant's redemptions ``via`` a channel of entry
    (e.g. "file")."""
    return (SetBatch if conn.dialect.name == "postgresql" else ExclusiveBatch)(ctx, now, via)


# -------------------------------------------------------------------------------- the fast path's PostgreSQL


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


_P_NOW = bindparam("now", type_=UTCDateTime())
_P_TENANT = bindparam("t", type_=assignment.c.tenant_id.type)
_P_CONTACT = bindparam("c", type_=assignment.c.contact_id.type)
_P_BIT = bindparam("bit", type_=Integer())


def _pg_fetch(channel: bool) -> PgText:
    """The plain fetch: the contact's assignments shown now (for one channel), oldest first."""
    inputs = Inputs(at=_P_NOW, started_by=_P_NOW, bit=_P_BIT if channel else None, contact=_P_CONTACT)
    return compile_pg(
        select(assignment.c.id, assignment.c.promotion_id, assignment.c.valid_from, assignment.c.valid_to)
        .join(promotion, promotion.c.id == assignment.c.promotion_id)
        .where(assignment.c.tenant_id == _P_TENANT, *shown(inputs))
        .order_by(assignment.c.created_at, assignment.c.id)
    )


def _pg_redeem(contact_scoped: bool) -> PgText:
    """The plain API redeem at the server's clock: the conditional write and its redemption row in one statement
    (UPDATE … RETURNING feeding the INSERT in a CTE); answers the redeemed assignment's promotion and validity."""
    channel = bindparam("ch", type_=String())
    inputs = Inputs(at=_P_NOW, started_by=_P_NOW, bit=_P_BIT, contact=_P_CONTACT if contact_scoped else None)
    won = (
        redeem_statement(_P_TENANT, bindparam("a", type_=assignment.c.id.type), inputs,
                         redeemed_values(_P_NOW, channel, None, None, "api"))
        .returning(assignment.c.id, assignment.c.tenant_id, assignment.c.promotion_id, assignment.c.valid_from,
                   assignment.c.valid_to, assignment.c.redemption_count)
        .cte("won")
    )  # fmt: skip
    rows = insert(redemption).from_select(
        ["id", "tenant_id", "assignment_id", "seq", "redeemed_at", "channel", "via", "created_at"],
        select(func.gen_random_uuid(), won.c.tenant_id, won.c.id, won.c.redemption_count, _P_NOW, channel,
               literal("api"), _P_NOW),
    ).cte("rows")  # fmt: skip
    return compile_pg(select(won.c.promotion_id, won.c.valid_from, won.c.valid_to).add_cte(rows))


PG_FETCH = {False: _pg_fetch(False), True: _pg_fetch(True)}  # by: with a channel filter
PG_REDEEM = {False: _pg_redeem(False), True: _pg_redeem(True)}  # by: on the contact-scoped path


# ----------------------------------------------------------------------------------------------- explanation


@dataclass(frozen=True)
class Refusal:
    """One condition an assignment fails: which (``reason``) and what a redeem answers for it (``error``: its
    code, status and message, e.g. "the promotion expired at 2026-03-10T23:59:59+01:00")."""

    reason: Reason
    error: PromoflowError


@dataclass(frozen=True)
class Explanation:
    """Whether one assignment is shown and redeemable at an instant and channel, and if not, why: ``refusals``
    lists every condition it fails, in the rule's order (the first is what a redeem answers); ``facts`` is the
    assignment's state to show beside them."""

    facts: Facts
    at: datetime
    channel: ChannelType | None
    refusals: tuple[Refusal, ...]

    @property
    def assignment_id(self) -> uuid.UUID:
        return self.facts.assignment_id

    @property
    def redeemable(self) -> bool:
        return not self.refusals

    @property
    def shown(self) -> bool:
        """The fetch lists exactly the assignments that are redeemable (for its channel filter, if any)."""
        return not self.refusals

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(r.reason for r in self.refusals)


async def _explanations(
    conn: AsyncConnection, ctx: TenantContext, moment: When, channel: ChannelType | None, contact_id: uuid.UUID | None,
    selection: ColumnElement[bool],
) -> list[Explanation]:  # fmt: skip
    checks = _applicable(Inputs.bound(moment, channel, contact_id))
    rows = (
        await conn.execute(
            select(
                assignment.c.id, assignment.c.promotion_id, assignment.c.contact_id, assignment.c.valid_from,
                assignment.c.valid_to, assignment.c.redeemed_at, assignment.c.redeemed_channel,
                assignment.c.redeemed_store, assignment.c.redeemed_receipt_id, assignment.c.deleted_at,
                promotion.c.activated_at, promotion.c.deactivated_at,
                *(case((expr, True), else_=False).label(f"ok_{cond.reason.value}") for cond, expr in checks),
            )
            .join(promotion, promotion.c.id == assignment.c.promotion_id)
            .where(assignment.c.tenant_id == ctx.tenant_id, selection)
            .order_by(assignment.c.created_at, assignment.c.id)
        )
    ).all()  # fmt: skip
    out = []
    for row in rows:
        facts = Facts(
            row.id, row.promotion_id, row.contact_id, row.valid_from, row.valid_to, row.redeemed_at,
            row.redeemed_channel, row.redeemed_store, row.redeemed_receipt_id, row.deleted_at, row.activated_at,
            row.deactivated_at,
        )  # fmt: skip
        refusals = tuple(
            Refusal(cond.reason, cond.refuse(facts, channel, ctx.tz))
            for cond, _ in checks
            if not getattr(row, f"ok_{cond.reason.value}")
        )
        out.append(Explanation(facts, moment.at, channel, refusals))
    return out


async def explain(
    conn: AsyncConnection,
    ctx: TenantContext,
    *,
    at: datetime,
    channel: ChannelType | None = None,
    assignment_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    assignment_ids: Sequence[uuid.UUID] | None = None,
) -> list[Explanation]:
    """Explain, at the instant ``at`` and for the ``channel`` (None: any), whether assignments are shown and
    redeemable, and if not why — from the same conditions the fetch and the redeem use.

    Give ``assignment_id`` for one assignment (a list of one, or empty when the tenant has no such assignment;
    with ``contact_id`` too, an assignment of another contact is refused `Reason.OTHER_CONTACT`), or only
    ``contact_id`` for all of that contact's assignments, oldest first. ``at`` is judged as the server's clock
    (no clock-skew tolerance). Each `Explanation` carries typed values: ``refusals`` (a `Reason` and the error a
    redeem would answer, e.g. `Reason.EXPIRED` with "the promotion expired at …", `Reason.NOT_YET_VALID` "valid
    from …", `Reason.CHANNEL`, `Reason.REDEEMED` "already redeemed at … via POS in store …", `Reason.DELETED`,
    `Reason.DRAFT`) and the facts behind them (validity, redemption, deletion, promotion activation and
    deactivation).

    ``assignment_ids`` explains several assignments in one query (a page of them: the admin UI's contact card),
    oldest first, without an explanation for an id the tenant does not have."""
    if assignment_id is None and contact_id is None and assignment_ids is None:
        raise ValueError("explain needs an assignment id, assignment ids or a contact id")
    selection = (
        assignment.c.id == assignment_id
        if assignment_id is not None
        else assignment.c.id.in_(assignment_ids)
        if assignment_ids is not None
        else assignment.c.contact_id == contact_id
    )
    return await _explanations(conn, ctx, When.server(at), channel, contact_id, selection)


async def refusal(
    conn: AsyncConnection,
    ctx: TenantContext,
    assignment_id: uuid.UUID,
    moment: When,
    channel: ChannelType,
    contact_id: uuid.UUID | None = None,
    *,
    found: list[Explanation] | None = None,
) -> PromoflowError:
    """The error of a redeem that changed nothing: the first condition the assignment fails (``found``: its
    explanation, when the caller has it already). An id that names a promotion definition is told so."""
    if found is None:
        found = await _explanations(conn, ctx, moment, channel, contact_id, assignment.c.id == assignment_id)
    if not found:
        definition = await conn.scalar(
            select(promotion.c.id).where(
                promotion.c.id == assignment_id, promotion.c.tenant_id == ctx.tenant_id
            )
        )
        if definition is not None:
            return PromotionNotFoundError(
                f"{assignment_id} is the id of a promotion definition; redeem takes the assignment id (the id of "
                "the contact's promotion item, as the fetch or the assign answer gives it)"
            )
        return PromotionNotFoundError(f"promotion {assignment_id} not found")
    if found[0].refusals:
        return found[0].refusals[0].error
    # Every condition holds now, though the write found nothing: a concurrent change (e.g. a reactivation).
    return PromotionNotRedeemableError("the promotion could not be redeemed")
