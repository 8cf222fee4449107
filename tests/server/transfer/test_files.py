"""The file lifecycle: the same content twice, upload order per tenant, a file waiting for the worker, a failing
file that does not stop the queue, a resumed import, and the imports API."""

from __future__ import annotations

import ftplib
import uuid
from datetime import timedelta

import pytest
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
    assert (
        list((transfer.root() / "integration/importResults").iterdir()) == []
    )  # no result before its import
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
    summary, _ = load_import_result(transfer.root() / imp["resultFile"].lstrip("/"))
    assert summary.counts[Verdict.APPLIED] == imp["counts"]["applied"] == 4
    spec = api.get("/openapi.json").json()
    assert spec["paths"]["/api/v2/imports"]["get"].get("x-promoflow-extension") is True


def test_every_import_has_its_own_result_file_whatever_its_name(transfer):
    """A name used twice (different content), and the same name refused in another folder: three imports, three
    result files, each carrying its own import id and verdicts; none overwrites another (issue 11 §6)."""
    from promoflow.wire.xml import CONTACT_IMPORT_DIR, IMPORT_RESULTS_DIR, result_file_name

    api = transfer.api
    first, second = _coupons(api, 1), _coupons(api, 2)
    name = "20260310120000_1_redemptions.xml"
    replies = [transfer.upload(REDEMPTION_IMPORT_DIR, name, _file(first))]
    transfer.run_jobs()
    replies.append(transfer.upload(REDEMPTION_IMPORT_DIR, name, _file(second)))
    with pytest.raises(ftplib.error_perm) as refused:
        transfer.upload(CONTACT_IMPORT_DIR, name, b"<contacts/>")
    transfer.run_jobs()
    imports = list(reversed(transfer.imports()))  # oldest first
    assert [i["fileName"] for i in imports] == [name] * 3
    assert [i["status"] for i in imports] == ["done", "done", "rejected"]
    paths = [i["resultFile"] for i in imports]
    assert paths == [f"{IMPORT_RESULTS_DIR}/{result_file_name(name, i['id'])}" for i in imports]
    assert len(set(paths)) == 3
    for imp, reply in zip(imports, [*replies, str(refused.value)], strict=True):
        assert imp["id"] in reply and imp["resultFile"] in reply  # each reply names its own import and result
    results = [load_import_result(transfer.root() / p.lstrip("/")) for p in paths]
    assert [len(records) for _, records in results] == [1, 2, 0]
    assert [s.status for s, _ in results] == ["processed", "processed", "rejected"]
    assert results[0][1][0].key == first[0] and {r.key for r in results[1][1]} == set(second)
    for imp, path in zip(imports, paths, strict=True):  # the file says which import it is
        assert f'importId="{imp["id"]}"'.encode() in (transfer.root() / path.lstrip("/")).read_bytes()
    listed = sorted(p.name for p in (transfer.root() / "integration/importResults").iterdir())
    assert listed == sorted(p.rsplit("/", 1)[1] for p in paths)  # and no name-only result that could mix them


def test_a_name_refused_for_itself_still_gets_a_result_file_named_by_its_import(transfer):
    """A name that cannot be part of a file name (it starts with '.') is answered 553 naming the result file,
    which is `<import id>.result.xml` and says why (issue 11 §11)."""
    from promoflow.wire.xml import IMPORT_RESULTS_DIR

    bad = "..20260310120000_1_redemptions.xml"
    with pytest.raises(ftplib.error_perm) as refused:
        transfer.upload(REDEMPTION_IMPORT_DIR, bad, b"<promotionRedemptions/>")
    reply = str(refused.value)
    assert reply.startswith("553") and "YYYYMMDDHHmmss" in reply
    transfer.run_jobs()
    (imp,) = transfer.imports()
    assert imp["status"] == "rejected" and imp["fileName"] == bad
    assert imp["resultFile"] == f"{IMPORT_RESULTS_DIR}/{imp['id']}.result.xml" and imp["resultFile"] in reply
    summary, records = transfer.result(bad)
    assert summary.status == "rejected" and "YYYYMMDDHHmmss" in (summary.reason or "") and records == []


def test_the_226_of_a_duplicate_names_the_new_import(transfer):
    api = transfer.api
    data = _file(_coupons(api, 1))
    first = transfer.upload(REDEMPTION_IMPORT_DIR, "20260310120000_1_redemptions.xml", data)
    again = transfer.upload(REDEMPTION_IMPORT_DIR, "20260310120500_1_redemptions.xml", data)
    transfer.run_jobs()
    original, duplicate = reversed(transfer.imports())
    assert duplicate["status"] == "duplicate" and duplicate["duplicateOf"] == original["id"]
    assert f"queued as import {original['id']}" in first
    assert f"queued as import {duplicate['id']}" in again  # the new one, which has the result file
    assert "duplicate" in again and original["id"] in again and duplicate["resultFile"] in again
