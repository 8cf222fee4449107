"""The redemption rule, in one place: when an assignment may be redeemed, and so when a contact is shown it.

An assignment may be redeemed once, inside its validity, on a channel its promotion allows. The rule is `RULE`, a
list of named conditions; each has its SQL expression over the assignment and its promotion, and the error (with
its explanation) that a redeem answers when it fails. Everything that decides "whether" or says "why not" is built
from that one list:

- the fetch filter (`shown`): a contact's assignments that pass every condition now — what the fetch lists;
- the single-row redeem (`redeem_statement`): one conditional ``UPDATE … WHERE <every condition>``. Exactly once:
  whichever transaction gets there first changes the row; every other sees no row to change and is refused;
- in `statements.py`, built from these: the batch strategies (`batch_for`: SQLite `ExclusiveBatch`, PostgreSQL
  `SetBatch`) and the PostgreSQL text of the fast path (`PG_FETCH`, `PG_REDEEM`);
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

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    case,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Update

from ...kit.timeutil import iso
from ...wire.engage import ChannelType
from ..exceptions import PromoflowError
from ..models import assignment, promotion
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


class When(NamedTuple):
    """The instant a redemption (or a fetch) is judged at. ``at`` is stored and compared with the end of validity;
    ``started_by`` is the latest ``valid_from`` that counts as started: ``at`` itself for the server's clock, later
    for an instant from a client's clock (see `when`). A tuple: a file's batch makes one per line."""

    at: datetime
    started_by: datetime

    @classmethod
    def server(cls, now: datetime) -> When:
        return cls(now, now)


_REST_OF_SECOND = timedelta(seconds=1) - timedelta(microseconds=1)


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
    return When(at, at + _grace(skew, at.microsecond == 0))


def _grace(skew: timedelta, whole_second: bool) -> timedelta:
    """How far past a client's instant an assignment's start still counts (`When.started_by` − ``at``)."""
    return skew + _REST_OF_SECOND if whole_second else skew


_MICROSECOND = timedelta(microseconds=1)


class ClientInstants:
    """`when` for the many client instants of one tenant at one ``now`` (a file's lines), as a batch line takes
    them (`statements.RedeemLine`): the instant as it came, and its grace in microseconds; the skew, the limit and
    both graces computed once, not per line."""

    def __init__(self, ctx: TenantContext, now: datetime) -> None:
        skew = ctx.clock_skew
        self._limit = now + skew
        self._grace = (_grace(skew, False) // _MICROSECOND, _grace(skew, True) // _MICROSECOND)

    def grace(self, client_at: datetime) -> int | None:
        """The grace of ``client_at`` in microseconds, or None where `when` refuses it (in the future, or out of
        range; `RedemptionService.redeem` then names the refusal)."""
        # Only at the ends of the range may an offset leave no UTC instant (`when`: out of range).
        if client_at.year in (1, 9999):
            try:
                client_at.astimezone(UTC)
            except (OverflowError, ValueError):
                return None
        if client_at > self._limit:
            return None
        return self._grace[client_at.microsecond == 0]


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
