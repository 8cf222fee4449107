"""The importer's overlapping batches (importer._Pipeline): on PostgreSQL, batch n + 1 is applied while batch n
still finishes, yet the verdicts are those of applying the file line by line, batches commit in file order, and a
failing batch takes the batch in flight down with it. Batches of 2 records, so a small file has several."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from promoflow.server.config import Settings
from promoflow.server.db import make_sync_engine
from promoflow.server.models import import_record, job, redemption
from promoflow.server.transfer import importer
from promoflow.server.transfer.importers import redemptions as red_mod
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, Verdict, write_redemptions
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion
from tests.server.transfer.test_files import _count

NAME = "20260310120000_7_redemptions.xml"
PG_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
WAIT = 20  # seconds: only reached when the behaviour under test is missing (the test then fails, not hangs)


@pytest.fixture
def settings(db_url, data_dir) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=db_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0,
                    import_batch_size=2)  # fmt: skip


def _coupons(api, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    return [assign(api, c["id"], promo["id"])["id"] for _ in range(n)]


def _red(coupon: str, **kw: object) -> Redemption:
    return Redemption(
        coupon_id=coupon, redemption_channel="POS", redeemed_on=START + timedelta(minutes=1), **kw
    )  # type: ignore[arg-type]


def test_lines_in_later_batches_see_earlier_batches(transfer):
    """A coupon or key that comes back in the next batch is judged as if the file were applied line by line:
    those two batches do not overlap."""
    api = transfer.api
    a, b, c, d = _coupons(api, 4)
    data = write_redemptions([
        _red(a, idempotency_key="k-a", unique_receipt_id="R1"),
        _red(b),
        _red(a, idempotency_key="k-a"),  # batch 2: the same key again → duplicate of line 1
        _red(b, unique_receipt_id="R9"),  # batch 2: b redeemed by line 2 → conflict
        _red(c, idempotency_key="k-a"),  # batch 3: key of line 1 on another coupon → invalid
        _red(d),
    ])  # fmt: skip
    _, records = transfer.process(REDEMPTION_IMPORT_DIR, NAME, data)
    assert [r.verdict for r in records] == [
        Verdict.APPLIED, Verdict.APPLIED, Verdict.DUPLICATE, Verdict.CONFLICT_ALREADY_REDEEMED, Verdict.INVALID,
        Verdict.APPLIED,
    ]  # fmt: skip
    assert records[2].unique_receipt_id == "R1"
    ids = [uuid.UUID(x) for x in (a, b, c, d)]
    assert _count(api.settings.resolved_database_url(), redemption, redemption.c.assignment_id.in_(ids)) == 3


def _hold_batch(monkeypatch: pytest.MonkeyPatch, held: int, log: list[str], *, fail: bool = False) -> None:
    """Batch ``held`` (by its first record's index) keeps its transaction open after applying its records until
    the next batch has applied its own and waits to commit; then it commits, or raises if ``fail``. Applies,
    waits and commits are logged in order."""
    real_apply, real_batch, real_wait = (
        red_mod.RedemptionApplier.apply,
        importer._apply_batch,
        importer._wait_for_commit,
    )
    waits = asyncio.Condition()
    waited_on: set[object] = set()  # the batch tasks a later batch waits for

    async def apply(self, conn, records):  # type: ignore[no-untyped-def]
        first = records[0].index
        log.append(f"apply {first}")
        outcomes = await real_apply(self, conn, records)
        if first == held:
            me = asyncio.current_task()
            async with waits:
                try:
                    await asyncio.wait_for(waits.wait_for(lambda: me in waited_on), WAIT)
                except TimeoutError:
                    log.append("no overlap")
            if fail:
                raise RuntimeError("batch failed while the next one waited")
        return outcomes

    async def wait_for_commit(previous):  # type: ignore[no-untyped-def]
        log.append("wait")
        async with waits:
            waited_on.add(previous)
            waits.notify_all()
        await real_wait(previous)

    async def apply_batch(job_, imp, factory, items, total, **kw):  # type: ignore[no-untyped-def]
        outcomes = await real_batch(job_, imp, factory, items, total, **kw)
        log.append(f"commit {items[0].index}")
        return outcomes

    monkeypatch.setattr(red_mod.RedemptionApplier, "apply", apply)
    monkeypatch.setattr(importer, "_apply_batch", apply_batch)
    monkeypatch.setattr(importer, "_wait_for_commit", wait_for_commit)


@PG_ONLY
def test_the_next_batch_runs_while_one_finishes_and_commits_come_in_file_order(transfer, monkeypatch):
    api = transfer.api
    coupons = _coupons(api, 6)
    log: list[str] = []
    _hold_batch(monkeypatch, 1, log)  # the first batch waits, in its transaction, for the second to start
    assert transfer.upload(REDEMPTION_IMPORT_DIR, NAME, write_redemptions([_red(c) for c in coupons]))
    transfer.run_jobs()
    # The second batch applied its lines and waited to commit while the first was still open; the first
    # committed first; the third started only then (never more than two at once).
    assert log[:4] == ["apply 1", "apply 3", "wait", "commit 1"], log
    assert log.index("apply 5") > log.index("commit 1")
    assert [e for e in log if e.startswith("commit")] == ["commit 1", "commit 3", "commit 5"]
    _, records = transfer.result(NAME)
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 6
    assert (
        _count(
            api.settings.resolved_database_url(),
            redemption,
            redemption.c.assignment_id.in_([uuid.UUID(c) for c in coupons]),
        )
        == 6
    )


@PG_ONLY
def test_a_failing_batch_rolls_back_the_batch_in_flight_and_the_retry_applies_each_line_once(
    transfer, monkeypatch
):
    api = transfer.api
    coupons = _coupons(api, 6)
    log: list[str] = []
    _hold_batch(monkeypatch, 3, log, fail=True)  # the second batch fails while the third waits to commit
    assert transfer.upload(REDEMPTION_IMPORT_DIR, NAME, write_redemptions([_red(c) for c in coupons]))
    transfer.run_jobs()
    assert "no overlap" not in log and "apply 5" in log, log
    assert [e for e in log if e.startswith("commit")] == ["commit 1"]
    ids = [uuid.UUID(c) for c in coupons]
    # Only the first batch is kept: the third (records 5, 6) was rolled back with the second.
    assert _count(api.settings.resolved_database_url(), redemption, redemption.c.assignment_id.in_(ids)) == 2
    assert (
        _count(
            api.settings.resolved_database_url(),
            import_record,
            import_record.c.tenant_id == uuid.UUID(api.tenant["tenantId"]),
        )
        == 2
    )
    monkeypatch.undo()
    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        with engine.begin() as conn:  # the retry is due later: make it due now, without sleeping
            conn.execute(update(job).where(job.c.status == "queued").values(run_after=api.clock.now()))
    finally:
        engine.dispose()
    transfer.run_jobs()
    summary, records = transfer.result(NAME)
    assert summary.total == 6 and [r.verdict for r in records] == [Verdict.APPLIED] * 6
    assert _count(api.settings.resolved_database_url(), redemption, redemption.c.assignment_id.in_(ids)) == 6
