"""The file lifecycle: the same content twice, upload order per tenant, a file waiting for the worker, a failing
file that does not stop the queue, a resumed import, and the imports API."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select, update

from promoflow.server.db import make_sync_engine
from promoflow.server.models import file_import, import_record, job, redemption
from promoflow.wire.xml import (
    REDEMPTION_IMPORT_DIR,
    Redemption,
    Verdict,
    load_import_result,
    write_redemptions,
)
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion


def _coupons(api, n: int) -> list[str]:
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    return [assign(api, c["id"], promo["id"])["id"] for _ in range(n)]


def _file(coupons: list[str], **kw: object) -> bytes:
    at = START + timedelta(minutes=1)
    return write_redemptions(
        [Redemption(coupon_id=c, redemption_channel="POS", redeemed_on=at, **kw) for c in coupons]  # type: ignore[arg-type]
    )


def _count(url: str, table, *where) -> int:  # type: ignore[no-untyped-def]
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)
    finally:
        engine.dispose()


def test_same_content_twice_is_a_duplicate_that_changes_nothing(transfer):
    api = transfer.api
    coupons = _coupons(api, 3)
    data = _file(coupons)
    first, second = "20260310120000_1_redemptions.xml", "20260310120500_1_redemptions.xml"
    assert "queued as import" in transfer.upload(REDEMPTION_IMPORT_DIR, first, data)
    assert "duplicate" in transfer.upload(REDEMPTION_IMPORT_DIR, second, data)
    transfer.run_jobs()
    url = api.settings.resolved_database_url()
    ids = [uuid.UUID(c) for c in coupons]
    assert _count(url, redemption, redemption.c.assignment_id.in_(ids)) == 3  # applied once
    summary, records = transfer.result(second)
    assert summary.status == "duplicate" and first in (summary.reason or "")
    assert [r.verdict for r in records] == [Verdict.APPLIED] * 3  # the original's verdicts, for reference
    imports = {i["fileName"]: i for i in transfer.imports()}
    assert imports[second]["status"] == "duplicate"
    assert imports[second]["duplicateOf"] == imports[first]["id"]
    assert imports[second]["counts"]["applied"] == 0  # nothing of its own
    # both files end in processed/
    processed = sorted(p.name for p in (transfer.root() / "integration/processed").iterdir())
    assert processed == [first, second]


def test_files_wait_for_the_worker_and_run_in_upload_order(transfer):
    api = transfer.api
    (coupon,) = _coupons(api, 1)
    # Three files touching one coupon, uploaded while no worker runs: order decides every verdict.
    names = [f"2026031012000{i}_1_redemptions.xml" for i in range(3)]
    transfer.upload(REDEMPTION_IMPORT_DIR, names[0], _file([coupon], idempotency_key="first"))
    transfer.upload(REDEMPTION_IMPORT_DIR, names[1], _file([coupon], store_external_id="S2"))
    transfer.upload(
        REDEMPTION_IMPORT_DIR, names[2], _file([coupon], idempotency_key="first", store_external_id="S3")
    )
    assert {i["status"] for i in transfer.imports()} == {"queued"}
    assert not (transfer.root() / "integration/importResults" / f"{names[0]}.result.xml").exists()
    transfer.run_jobs()
    verdicts = [transfer.result(n)[1][0].verdict for n in names]
    assert verdicts == [Verdict.APPLIED, Verdict.CONFLICT_ALREADY_REDEEMED, Verdict.DUPLICATE]


def test_a_file_that_fails_never_blocks_the_queue(transfer, monkeypatch):
    """A record whose application raises (a bug, not a refusal) fails its batch; retries back off; on the last
    attempt records are applied one by one, the poison one is reported invalid, and the next file flows."""
    from promoflow.server.transfer.importers import redemptions as mod

    api = transfer.api
    coupons = _coupons(api, 3)
    poison = coupons[1]
    real = mod.RedemptionApplier.apply

    async def flaky(self, conn, records):  # type: ignore[no-untyped-def]
        if any(r.value.coupon_id == poison for r in records):
            raise RuntimeError("boom")
        return await real(self, conn, records)

    monkeypatch.setattr(mod.RedemptionApplier, "apply", flaky)
    bad, good = "20260310120000_1_redemptions.xml", "20260310120001_1_redemptions.xml"
    transfer.upload(REDEMPTION_IMPORT_DIR, bad, _file(coupons[:2]))
    transfer.upload(REDEMPTION_IMPORT_DIR, good, _file(coupons[2:]))
    url = api.settings.resolved_database_url()
    engine = make_sync_engine(url)
    try:
        for _ in range(5):  # each attempt fails and is retried later: make "later" now, without sleeping
            transfer.run_jobs()
            with engine.begin() as conn:
                conn.execute(update(job).where(job.c.status == "queued").values(run_after=api.clock.now()))
        transfer.run_jobs()
    finally:
        engine.dispose()
    _, records = transfer.result(bad)
    assert [r.verdict for r in records] == [Verdict.APPLIED, Verdict.INVALID]
    assert "RuntimeError: boom" in (records[1].reason or "")
    assert transfer.result(good)[1][0].verdict is Verdict.APPLIED
    statuses = {i["fileName"]: i["status"] for i in transfer.imports()}
    assert statuses == {bad: "done", good: "done"}


def test_an_interrupted_import_resumes_after_the_last_committed_batch(transfer):
    """Simulates a worker that died after committing some batches: the verdicts of records 1..k exist. The next
    run applies only k+1..n, and the result file lists all n records."""
    api = transfer.api
    coupons = _coupons(api, 5)
    name = "20260310120000_1_redemptions.xml"
    transfer.upload(REDEMPTION_IMPORT_DIR, name, _file(coupons))
    url = api.settings.resolved_database_url()
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            tid = uuid.UUID(api.tenant["tenantId"])
            imp = conn.execute(select(file_import).where(file_import.c.tenant_id == tid)).first()
            # records 1 and 2 "already applied" by the dead worker: their verdicts say so, their effect is absent
            # here on purpose, so a re-application would show up as two extra redemptions.
            conn.execute(
                import_record.insert(),
                [{"import_id": imp.id, "record_index": i, "tenant_id": imp.tenant_id, "verdict": "applied",
                  "key": coupons[i - 1]} for i in (1, 2)],
            )  # fmt: skip
            conn.execute(update(file_import).where(file_import.c.id == imp.id).values(status="running",
                                                                                          records_total=5))  # fmt: skip
    finally:
        engine.dispose()
    transfer.run_jobs()
    ids = [uuid.UUID(c) for c in coupons]
    assert _count(url, redemption, redemption.c.assignment_id.in_(ids)) == 3  # only records 3..5 applied
    summary, records = transfer.result(name)
    assert [r.index for r in records] == [1, 2, 3, 4, 5] and summary.total == 5


def test_imports_api_pages_and_isolates_tenants(transfer):
    api = transfer.api
    coupons = _coupons(api, 4)
    name = "20260310120000_1_redemptions.xml"
    transfer.upload(REDEMPTION_IMPORT_DIR, name, _file(coupons))
    (queued,) = transfer.imports()
    assert queued["status"] == "queued" and queued["recordsDone"] == 0
    transfer.run_jobs()
    (imp,) = transfer.imports()
    assert imp["fileName"] == name and imp["recordsTotal"] == 4 and imp["resultFile"].endswith(".result.xml")
    assert imp["status"] == "done" and imp["recordsDone"] == 4  # not null once finished
    assert transfer.import_detail(imp["id"])["recordsDone"] == 4
    page = transfer.import_detail(imp["id"], offset=1, count=2)
    assert [r["index"] for r in page["records"]["items"]] == [2, 3] and page["records"]["totalCount"] == 4
    other = api.new_tenant()
    r = api.get(f"/api/v2/imports/{imp['id']}", headers=api.as_tenant(other))
    assert r.status_code == 404 and r.json()["errorCode"] == "ImportNotFound"
    assert api.get("/api/v2/imports", headers=api.as_tenant(other)).json()["totalCount"] == 0
    r = api.get("/api/v2/imports/not-a-guid")
    assert r.status_code == 400 and r.json()["errorCode"] == "InvalidImportId"
    r = api.get(f"/api/v2/imports/{imp['id']}", params={"verdict": "nope"})
    assert r.status_code == 400 and r.json()["errorCode"] == "InvalidVerdict"
    # the file on disk says the same as the API
    summary, _ = load_import_result(transfer.root() / "integration/importResults" / f"{name}.result.xml")
    assert summary.counts[Verdict.APPLIED] == imp["counts"]["applied"] == 4
    spec = api.get("/openapi.json").json()
    assert spec["paths"]["/api/v2/imports"]["get"].get("x-promoflow-extension") is True
