"""One tenant's big file does not hold up another tenant's small one (issue 11 §11): with one worker and one turn,
the small file is imported between two batches of the big one, each tenant's files still in upload order; with
`worker_concurrency` 2 two tenants' batches run at the same moment, never two of one tenant. Real files over the
real FTP server, the real worker in this process; the big file in batches of 10."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from promoflow.server.config import Settings
from promoflow.server.models import redemption
from promoflow.server.transfer import importer
from promoflow.server.transfer.importers import redemptions as red_mod
from promoflow.server.worker.runner import Worker
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, Verdict, write_redemptions
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion
from tests.server.transfer.test_files import _count

WAIT = 20  # seconds: only reached when the behaviour under test is missing (the test then fails, not hangs)


@pytest.fixture
def settings(db_url, data_dir) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=db_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0,
                    import_batch_size=10, export_interval_seconds=0)  # fmt: skip


def _coupons(api: Any, n: int, headers: dict[str, str] | None = None) -> list[str]:
    c = new_contact(api, headers=headers)
    promo = new_promotion(api, headers=headers, channels=[channel("POS")])
    return [assign(api, c["id"], promo["id"], headers=headers)["id"] for _ in range(n)]


def _file(coupons: list[str]) -> bytes:
    at = START + timedelta(minutes=1)
    return write_redemptions(
        [Redemption(coupon_id=c, redemption_channel="POS", redeemed_on=at) for c in coupons]
    )


def _finished_in_order(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file names of the imports, in the order they finished (the real _finish, logged)."""
    finished: list[str] = []
    real = importer._finish

    async def finish(job, store, imp, *args, **kw):  # type: ignore[no-untyped-def]
        out = await real(job, store, imp, *args, **kw)
        finished.append(imp.file_name)
        return out

    monkeypatch.setattr(importer, "_finish", finish)
    return finished


def test_a_small_file_of_another_tenant_is_imported_between_the_batches_of_a_big_one(transfer, monkeypatch):
    api = transfer.api
    big = _coupons(api, 120)  # twelve batches
    b = api.new_tenant()
    small = _coupons(api, 1, api.as_tenant(b))
    after = _coupons(api, 1)
    finished = _finished_in_order(monkeypatch)
    assert transfer.upload(REDEMPTION_IMPORT_DIR, "20260310120000_A_redemptions.xml", _file(big)).startswith(
        "226"
    )
    assert transfer.upload(
        REDEMPTION_IMPORT_DIR, "20260310120001_B_redemptions.xml", _file(small), b
    ).startswith("226")
    assert transfer.upload(
        REDEMPTION_IMPORT_DIR, "20260310120002_A_redemptions.xml", _file(after)
    ).startswith("226")
    api.clock.advance(timedelta(seconds=5))  # due a while: a busy worker may hold them in reserve
    transfer.run_jobs()
    # B's file went between two batches of A's; A's second file, behind A's first, after it
    assert finished == [
        "20260310120001_B_redemptions.xml", "20260310120000_A_redemptions.xml", "20260310120002_A_redemptions.xml",
    ]  # fmt: skip
    summary, records = transfer.result("20260310120000_A_redemptions.xml")
    assert summary.total == 120 and [r.index for r in records] == list(range(1, 121))
    assert {r.verdict for r in records} == {Verdict.APPLIED}
    assert transfer.result("20260310120001_B_redemptions.xml", b)[1][0].verdict is Verdict.APPLIED
    ids = [uuid.UUID(c) for c in big + small + after]
    assert (
        _count(api.settings.resolved_database_url(), redemption, redemption.c.assignment_id.in_(ids)) == 122
    )


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_with_two_turns_two_tenants_batches_run_at_once_and_never_two_of_one_tenant(transfer, monkeypatch):
    """worker_concurrency=2 on PostgreSQL (SQLite has one writer: its batches take turns on the database lock):
    the first batch waits, inside its transaction, until another tenant's batch runs beside it; a tenant's
    second file never runs beside its first."""
    api = transfer.api
    b = api.new_tenant()
    files = {
        api.tenant["tenantId"]: [_coupons(api, 30), _coupons(api, 10)],
        b["tenantId"]: [_coupons(api, 30, api.as_tenant(b))],
    }
    running: dict[str, set[int]] = {}  # tenant → the imports applying a batch right now
    most = {"tenants": 0}
    overlap = asyncio.Event()
    real_init, real_apply = red_mod.RedemptionApplier.__init__, red_mod.RedemptionApplier.apply

    def init(self, tenant, imp, now):  # type: ignore[no-untyped-def]
        real_init(self, tenant, imp, now)
        self.import_row = imp.id

    async def apply(self, conn, records):  # type: ignore[no-untyped-def]
        mine = running.setdefault(str(self.ctx.tenant_id), set())
        mine.add(self.import_row)
        assert len(mine) == 1, "two files of one tenant at once"
        busy = sum(1 for imports in running.values() if imports)
        most["tenants"] = max(most["tenants"], busy)
        if busy == 2:
            overlap.set()
        try:
            # the first batch waits for a batch of the other tenant
            await asyncio.wait_for(overlap.wait(), WAIT)
            return await real_apply(self, conn, records)
        finally:
            mine.discard(self.import_row)

    monkeypatch.setattr(red_mod.RedemptionApplier, "__init__", init)
    monkeypatch.setattr(red_mod.RedemptionApplier, "apply", apply)
    n = 0
    for tenant in (api.tenant, b):
        for coupons in files[tenant["tenantId"]]:
            n += 1
            name = f"2026031012000{n}_1_redemptions.xml"
            assert transfer.upload(REDEMPTION_IMPORT_DIR, name, _file(coupons), tenant).startswith("226")
    api.clock.advance(timedelta(seconds=5))
    app_state = api.client.app.state.promoflow  # type: ignore[attr-defined]
    settings = api.settings.model_copy(update={"worker_concurrency": 2})
    worker = Worker(app_state.db, api.clock, settings=settings, poll_seconds=0.05)
    assert worker.concurrency == 2
    assert api.client.portal is not None
    assert api.client.portal.call(worker.run_until_idle) == 3
    assert overlap.is_set() and most["tenants"] == 2
    for tenant in (api.tenant, b):
        for item in transfer.imports(tenant):
            assert item["status"] == "done" and item["counts"]["applied"] == item["recordsTotal"], item
