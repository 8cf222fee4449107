"""The redemption rule (promotion/redemption.py) as one table of cases, run at the service level (a real database
connection, no HTTP) against every path that decides "whether" or says "why not":

- every redeem strategy: the single-row redeem (`RedemptionService.redeem`: the routed API, receipts, a file's
  left-over lines), the database's batch strategy (`batch_for`: SQLite's ExclusiveBatch, PostgreSQL's SetBatch),
  and the fast path's compiled statement through the fast path's lane (`PG_REDEEM` on asyncpg; on SQLite
  `SQLITE_REDEEM` in its writer's group commit);
- the fetch filter (`AssignmentService.list_for_contact`, and the fast path's `PG_FETCH` / `SQLITE_FETCH`);
- the explanation (`explain`, the admin UI's "why not", and `refusal`, the error a refused redeem answers).

Each case builds its own contact, promotion and assignment in a fresh tenant, so a path that changes the row
(a successful redeem) cannot affect another. SQLite in the README's test command; PostgreSQL with the marker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from promoflow.server.db import Database
from promoflow.server.exceptions import PromoflowError
from promoflow.server.models import assignment, contact, promotion, tenant
from promoflow.server.promotion.assignment import AssignmentService, RedemptionService
from promoflow.server.promotion.fastlane import AsyncpgPool, Lane, PgLane
from promoflow.server.promotion.redemption import Reason, When, explain, refusal, when
from promoflow.server.promotion.rules import CHANNEL_BITS
from promoflow.server.promotion.sqlitelane import SqliteLane
from promoflow.server.promotion.statements import RedeemLine, batch_for
from promoflow.server.tenant.service import TenantContext, TenantService, context_from_row
from promoflow.wire.engage import ChannelType

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

OK = None
FOUND, OTHER_CONTACT, NOT_REDEEMABLE = (
    "PromotionNotFound",
    "PromotionNotAssociatedWithContact",
    "PromotionNotRedeemable",
)
REDEEMED, CHANNEL, EXPIRED, NOT_YET = (
    "PromotionAlreadyRedeemed", "PromotionNotValidForRedemptionChannel", "PromotionExpired", "PromotionNotYetValid",
)  # fmt: skip
REASON_OF = {
    FOUND: Reason.DELETED, OTHER_CONTACT: Reason.OTHER_CONTACT, NOT_REDEEMABLE: Reason.DRAFT,
    REDEEMED: Reason.REDEEMED, CHANNEL: Reason.CHANNEL, EXPIRED: Reason.EXPIRED, NOT_YET: Reason.NOT_YET_VALID,
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One situation and what the rule says about it (None: redeemable, and shown; else the error code)."""

    expected: str | None
    promotion: dict[str, Any] = field(default_factory=dict)
    assignment: dict[str, Any] = field(default_factory=dict)
    channel: ChannelType = ChannelType.POS
    as_other_contact: bool = False  # redeem on the contact-scoped path as another contact of the tenant
    other_tenant: bool = False  # the assignment is another tenant's
    client_at: datetime | None = (
        None  # an instant from a client's clock (redeemedOn, a receipt's createdDate)
    )
    skew: int = 300  # the tenant's clockSkewSeconds

    @property
    def server_time(self) -> bool:
        return self.client_at is None


CASES = {
    "valid": Case(OK),
    "valid until its last instant": Case(OK, assignment={"valid_to": NOW}),
    "expired": Case(EXPIRED, assignment={"valid_to": NOW - timedelta(seconds=1)}),
    "not yet valid": Case(NOT_YET, assignment={"valid_from": NOW + timedelta(seconds=1)}),
    "scheduled (promotion starts tomorrow)": Case(
        NOT_YET, promotion={"start_date": date(2026, 3, 11)}, assignment={"valid_from": NOW + DAY}
    ),
    "wrong channel": Case(CHANNEL, channel=ChannelType.ECOM),
    "a channel among several": Case(OK, promotion={"channel_mask": 7}, channel=ChannelType.OTHER),
    "redeemed": Case(
        REDEEMED,
        assignment={
            "redeemed_at": NOW - DAY,
            "redeemed_channel": "POS",
            "redeemed_store": "S-1",
            "redemption_count": 1,
        },
    ),  # fmt: skip
    "deleted": Case(FOUND, assignment={"deleted_at": NOW - DAY}),
    "other tenant": Case(FOUND, other_tenant=True),
    "draft": Case(NOT_REDEEMABLE, promotion={"activated_at": None}),
    "deactivated (its assignments stay valid)": Case(OK, promotion={"deactivated_at": NOW - DAY}),
    "wrong contact": Case(OTHER_CONTACT, as_other_contact=True),
    "redeemed and expired: redeemed is said first": Case(
        REDEEMED,
        assignment={
            "redeemed_at": NOW - DAY,
            "redeemed_channel": "POS",
            "redemption_count": 1,
            "valid_to": NOW - timedelta(hours=1),
        },
    ),  # fmt: skip
    # An instant from a client's clock (issue 11 §5).
    "client instant in the same second as the assignment": Case(
        OK, assignment={"valid_from": NOW + timedelta(milliseconds=400)}, client_at=NOW, skew=0
    ),
    "client instant with sub-second precision is compared as sent": Case(
        NOT_YET,
        assignment={"valid_from": NOW + timedelta(milliseconds=400)},
        client_at=NOW + timedelta(milliseconds=100),
        skew=0,
    ),
    "client instant earlier than the assignment, within the clock skew": Case(
        OK, assignment={"valid_from": NOW + timedelta(minutes=2)}, client_at=NOW
    ),
    "client instant earlier than the assignment, beyond the clock skew": Case(
        NOT_YET, assignment={"valid_from": NOW + timedelta(minutes=6)}, client_at=NOW
    ),
    "client instant after the end of validity": Case(
        EXPIRED, assignment={"valid_to": NOW - timedelta(seconds=1)}, client_at=NOW
    ),
}


@dataclass
class World:
    """One case's rows, and how to reach them."""

    db: Database
    ctx: TenantContext
    case: Case
    assignment_id: uuid.UUID
    contact_id: uuid.UUID  # the assignment's contact
    ask_contact: uuid.UUID | None  # the contact the request names (contact-scoped path), if any

    @property
    def now(self) -> datetime:
        # Server time is NOW; a client's instant is judged with the server a little later (not in the future).
        return NOW if self.case.server_time else NOW + timedelta(minutes=1)

    @property
    def moment(self) -> When:
        return when(self.ctx, self.now, self.case.client_at)


async def _tenant(conn: Any, skew: int) -> TenantContext:
    new = await TenantService(NOW).create(conn, f"rule-{uuid.uuid4().hex[:12]}")
    row = (await conn.execute(select(tenant).where(tenant.c.id == new.tenant_id))).one()
    ctx = context_from_row(row)
    return dataclasses.replace(ctx, settings={**ctx.settings, "clockSkewSeconds": skew})


async def _build(db: Database, case: Case) -> World:
    async with db.write() as conn:
        ctx = await _tenant(conn, case.skew)
        owner = await _tenant(conn, case.skew) if case.other_tenant else ctx
        cids = []
        for _ in range(2):
            cid = uuid.uuid4()
            await conn.execute(insert(contact).values(
                id=cid, tenant_id=owner.tenant_id, contact_type="Member", attributes={}, preferences={},
                key_value=f"{cid.hex}@example.com", created_at=NOW, updated_at=NOW,
            ))  # fmt: skip
            cids.append(cid)
        pid = uuid.uuid4()
        await conn.execute(insert(promotion).values({
            "id": pid, "tenant_id": owner.tenant_id, "name": "p", "start_date": date(2026, 1, 1),
            "end_date": None, "channels": [{"type": "POS", "valueType": "PERCENT", "value": "10"}],
            "channel_mask": CHANNEL_BITS[ChannelType.POS], "activated_at": NOW - 10 * DAY, "created_at": NOW,
            "updated_at": NOW, **case.promotion,
        }))  # fmt: skip
        aid = uuid.uuid4()
        await conn.execute(insert(assignment).values({
            "id": aid, "tenant_id": owner.tenant_id, "promotion_id": pid, "contact_id": cids[0],
            "valid_from": NOW - DAY, "valid_to": NOW + DAY, "source": "api", "created_at": NOW - DAY,
            **case.assignment,
        }))  # fmt: skip
    ask = cids[1] if case.as_other_contact else None
    return World(db, ctx, case, aid, cids[0], ask)


def _code(exc: PromoflowError) -> str:
    return exc.code.value


# ------------------------------------------------------------------------------------------ the strategies


async def single(w: World) -> str | None:
    """`RedemptionService.redeem`: the routed API, receipts, and a file's left-over lines."""
    async with w.db.write() as conn:
        try:
            await RedemptionService(w.ctx, w.now).redeem(
                conn, w.assignment_id, w.case.channel, contact_id=w.ask_contact,
                redeemed_on=w.case.client_at, via="api",
            )  # fmt: skip
        except PromoflowError as exc:
            return _code(exc)
    return OK


async def batch(w: World) -> str | None:
    """The database's batch strategy (a file's lines); a line it does not redeem is explained by `refusal`."""
    async with w.db.write() as conn:
        line = RedeemLine.of(w.assignment_id, w.case.channel, w.moment, w.ask_contact)
        won = await batch_for(conn, w.ctx, w.now, via="file").redeem_many(conn, [line])
        if str(w.assignment_id) in won:
            return OK
        return _code(await refusal(conn, w.ctx, w.assignment_id, w.moment, w.case.channel, w.ask_contact))


def _lane(db: Database) -> Lane:
    """The fast path's own lane: on PostgreSQL asyncpg connections, on SQLite raw `sqlite3` connections (its
    writer thread's group commit)."""
    if db.sqlite:
        lane = SqliteLane.open(db)
        assert lane is not None
        return lane
    return PgLane(AsyncpgPool(db.engine.url.render_as_string(hide_password=False), 1))


async def fast(w: World) -> str | None:
    """The fast path's compiled statement (server time only), through the fast path's lane."""
    lane = _lane(w.db)
    try:
        won = await lane.redeem(w.ctx, w.assignment_id, w.ask_contact, w.case.channel, w.now)
    finally:
        await lane.close()
    if won is not None:
        return OK
    async with w.db.read() as rconn:
        return _code(await refusal(rconn, w.ctx, w.assignment_id, w.moment, w.case.channel, w.ask_contact))


STRATEGIES: dict[str, Callable[[World], Awaitable[str | None]]] = {"single": single, "batch": batch}


def _run(db_url: str, case: Case, check: Callable[[World], Awaitable[None]]) -> None:
    async def go() -> None:
        db = Database(db_url, pool_size=2)
        try:
            await check(await _build(db, case))
        finally:
            await db.dispose()

    asyncio.run(go())


def _check_strategy(db_url: str, case: Case, strategy: Callable[[World], Awaitable[str | None]]) -> None:
    async def check(w: World) -> None:
        assert await strategy(w) == case.expected
        # Exactly once: a second attempt is refused, whatever the first did.
        assert await strategy(w) == (REDEEMED if case.expected is OK else case.expected)

    _run(db_url, case, check)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("name", list(CASES))
def test_every_redeem_strategy_follows_the_rule(db_url: str, name: str, strategy: str) -> None:
    _check_strategy(db_url, CASES[name], STRATEGIES[strategy])


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.server_time])
def test_the_fast_path_statement_follows_the_rule(db_url: str, name: str) -> None:
    """The fast path takes only the server's clock (it declines a body with redeemedOn)."""
    _check_strategy(db_url, CASES[name], fast)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.server_time])
def test_the_fetch_filter_shows_exactly_the_redeemable(db_url: str, name: str) -> None:
    case = CASES[name]

    async def check(w: World) -> None:
        fetcher = w.ask_contact or w.contact_id
        async with w.db.read() as conn:
            try:
                views = await AssignmentService(w.ctx, w.now).list_for_contact(conn, fetcher, w.case.channel)
            except PromoflowError as exc:
                assert case.other_tenant and _code(exc) == "ContactNotFound"
                views = []
        assert (w.assignment_id in {v.id for v in views}) is (case.expected is OK)
        lane = _lane(w.db)
        try:
            rows, _ = await lane.fetch(w.ctx, fetcher, CHANNEL_BITS[w.case.channel], w.now)
        except PromoflowError as exc:
            assert case.other_tenant and _code(exc) == "ContactNotFound"
            rows = []
        finally:
            await lane.close()
        assert (w.assignment_id in {r[0] for r in rows}) is (case.expected is OK)

    _run(db_url, case, check)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.server_time])
def test_the_explanation_agrees_with_the_rule(db_url: str, name: str) -> None:
    case = CASES[name]

    async def check(w: World) -> None:
        async with w.db.read() as conn:
            found = await explain(conn, w.ctx, at=w.now, channel=case.channel, assignment_id=w.assignment_id,
                                  contact_id=w.ask_contact)  # fmt: skip
            by_contact = await explain(conn, w.ctx, at=w.now, channel=case.channel, contact_id=w.contact_id)
        if case.other_tenant:
            assert found == [] and by_contact == []
            return
        [ex] = found
        assert [e.assignment_id for e in by_contact] == [w.assignment_id]
        assert ex.redeemable is ex.shown is (case.expected is OK)
        if case.expected is OK:
            assert ex.refusals == ()
        else:
            first = ex.refusals[0]
            assert (first.reason, _code(first.error)) == (REASON_OF[case.expected], case.expected)
            assert first.error.message
        if case.promotion.get("deactivated_at"):
            assert ex.facts.promotion_deactivated_at == case.promotion["deactivated_at"]

    _run(db_url, case, check)


def test_an_explanation_names_every_condition_that_fails(db_url: str) -> None:
    case = Case(REDEEMED, assignment={"redeemed_at": NOW - DAY, "redeemed_channel": "POS", "redeemed_store": "S-9",
                                      "redemption_count": 1, "valid_to": NOW - timedelta(hours=1)},
                channel=ChannelType.ECOM)  # fmt: skip

    async def check(w: World) -> None:
        async with w.db.read() as conn:
            [ex] = await explain(
                conn, w.ctx, at=w.now, channel=ChannelType.ECOM, assignment_id=w.assignment_id
            )
        assert ex.reasons == (Reason.REDEEMED, Reason.CHANNEL, Reason.EXPIRED)
        assert "in store S-9" in ex.refusals[0].error.message
        assert ex.facts.redeemed_store == "S-9" and ex.facts.valid_to == NOW - timedelta(hours=1)

    _run(db_url, case, check)


def test_a_definition_id_is_told_to_be_one(db_url: str) -> None:
    """Issue 11 §8: redeem takes an assignment id; a definition id is named as such."""

    async def check(w: World) -> None:
        async with w.db.read() as conn:
            pid = await conn.scalar(
                select(assignment.c.promotion_id).where(assignment.c.id == w.assignment_id)
            )
            error = await refusal(conn, w.ctx, pid, When.server(NOW), ChannelType.POS)
        assert _code(error) == FOUND
        assert "promotion definition" in error.message and "assignment id" in error.message

    _run(db_url, Case(OK), check)
