"""Admin UI part 2 speed (issue 14): Reports and Imports at a million rows.

- The Reports page of a promotion holding 1,000,000 assignments (20 % redeemed over two channels and 20 stores,
  40 % shown, spread over 60 days) renders in < 1 s, its 60-day range shown, from the promotion's report snapshot
  (first view: "computing…" and a job; the job's time is printed; then the page and its CSV from the snapshot).
  Baseline in the same run: the API's own report of that promotion (``GET /api/v2/reports/promotions/{id}``), which
  the snapshot job computes.
- The Imports list and an import's line results page in p95 < 150 ms with 1,000,000 import-record rows (one file of
  a million lines among 100,000 imports): first page, a deep keyset page, a verdict filter, a coupon search. Floor
  in the same run: the same gateway call on a bare connection (no HTTP, no session, no template).

Whole HTTP requests through the app (session, queries, template). Seeded with bulk SQL.

    python bench/admin_reports_bench.py                 # SQLite in a temporary directory
    python bench/admin_reports_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    python bench/admin_reports_bench.py --assignments 200000 --reports-only   # a smaller run, Reports only

The machine may be shared: read the figures as indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import admin_sign_in, log
from bench._common import timed as _timed
from sqlalchemy import insert, text
from starlette.testclient import TestClient

from promoflow.kit.clock import SystemClock
from promoflow.server.admin import transfers
from promoflow.server.admin.users import UserService
from promoflow.server.config import Settings
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.models import assignment, contact, file_import, import_record, promotion
from promoflow.server.models.receipts import assignment_shown
from promoflow.server.tenant.service import TenantService, context_from_row
from promoflow.server.tenant_setup import create_tenant
from promoflow.server.worker.runner import Worker

CONTACTS = 50_000
ASSIGNMENTS = 1_000_000
IMPORTS = 100_000
RECORDS = 1_000_000
DAYS = 60
RUNS = 20
REPORTS_ONLY = False
VERDICTS = ["applied"] * 90 + ["notFound"] * 6 + ["conflictAlreadyRedeemed"] * 3 + ["invalid"]


def seed(url: str) -> tuple[dict[str, Any], str, str, uuid.UUID, uuid.UUID, str]:
    now = datetime.now(UTC)
    settings = Settings(database_url=url, data_dir=Path(tempfile.mkdtemp()))
    tenant = asyncio.run(create_tenant(settings, now, f"bench-{uuid.uuid4().hex[:8]}"))
    email = f"bench-{uuid.uuid4().hex[:6]}@example.com"

    async def user() -> str | None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as conn:
                return (await UserService(now).create(conn, email, tenant["name"], "viewer")).password
        finally:
            await db.dispose()

    password = asyncio.run(user())
    assert password is not None
    tid = uuid.UUID(tenant["tenantId"])
    engine = make_sync_engine(url, foreign_keys=False)
    t0 = time.perf_counter()
    pid = uuid.uuid4()
    start = now - timedelta(days=DAYS)
    with engine.begin() as conn:
        contact_ids = [uuid.uuid4() for _ in range(CONTACTS)]
        for i in range(0, CONTACTS, 10_000):
            conn.execute(insert(contact), [
                {"id": cid, "tenant_id": tid, "contact_type": "Member", "attributes": {"email": f"c{i + k}@example.com"},
                 "preferences": {}, "key_value": f"c{i + k}@example.com", "email": f"c{i + k}@example.com",
                 "approved": True, "created_at": start, "updated_at": start}
                for k, cid in enumerate(contact_ids[i : i + 10_000])])  # fmt: skip
        conn.execute(insert(promotion), [{
            "id": pid, "tenant_id": tid, "name": "Million", "external_id": "MILLION", "start_date": date(2026, 1, 1),
            "end_date": None, "channels": [{"type": "POS", "valueType": "PERCENT", "value": "10"},
                                           {"type": "ECOM", "valueType": "PERCENT", "value": "10"}],
            "channel_mask": 3, "return_policy": "none", "activated_at": start, "created_at": start, "updated_at": start}])  # fmt: skip
        arows: list[dict[str, Any]] = []
        srows: list[dict[str, Any]] = []
        for n in range(ASSIGNMENTS):
            aid = uuid.uuid4()
            made = start + timedelta(seconds=n * DAYS * 86_400 // ASSIGNMENTS)
            redeemed = made + timedelta(hours=n % 48) if n % 5 == 0 else None
            arows.append({"id": aid, "tenant_id": tid, "promotion_id": pid, "contact_id": contact_ids[n % CONTACTS],
                          "valid_from": made, "valid_to": None, "source": "bench", "redeemed_at": redeemed,
                          "redeemed_channel": ("POS" if n % 3 else "ECOM") if redeemed else None,
                          "redeemed_store": f"S{n % 20}" if redeemed else None,
                          "redemption_count": 1 if redeemed else 0, "reactivation_count": 0, "created_at": made})  # fmt: skip
            if n % 5 < 2:
                srows.append({"assignment_id": aid, "tenant_id": tid, "promotion_id": pid,
                              "first_shown_at": made + timedelta(minutes=30), "last_shown_at": made + timedelta(hours=1),
                              "times": 1 + n % 3})  # fmt: skip
            if len(arows) == 20_000 or n == ASSIGNMENTS - 1:
                conn.execute(insert(assignment), arows)
                conn.execute(insert(assignment_shown), srows)
                arows, srows = [], []
        big = None
        irows: list[dict[str, Any]] = []
        for n in range(IMPORTS):
            last = n == IMPORTS - 1
            irows.append({"public_id": uuid.uuid4(), "tenant_id": tid, "kind": "redemptions",
                          "folder": "/integration/promotionRedemptionImport", "file_name": f"{n:08d}_redemptions.xml",
                          "content_hash": uuid.uuid4().hex, "size_bytes": 1000, "status": "done" if n % 50 else "rejected",
                          "reason": None if n % 50 else "not well-formed (line 3): mismatched tag",
                          "records_total": RECORDS if last else 10, "counts": {"applied": RECORDS if last else 10},
                          "result_file": None, "received_at": start + timedelta(seconds=n), "finished_at": start + timedelta(seconds=n + 1)})  # fmt: skip
            if len(irows) == 10_000 or last:
                conn.execute(insert(file_import), irows)
                irows = []
        big_public = conn.execute(
            text("SELECT id, public_id FROM file_import ORDER BY id DESC LIMIT 1")
        ).one()
        big, big_id = big_public[0], big_public[1]
        big_id = big_id if isinstance(big_id, uuid.UUID) else uuid.UUID(str(big_id))
        rrows: list[dict[str, Any]] = []
        coupon = ""
        for n in range(1, RECORDS + 1):
            key = str(uuid.uuid4())
            if n == RECORDS // 2:
                coupon = key
            rrows.append({"import_id": big, "record_index": n, "tenant_id": tid, "line": n + 2,
                          "verdict": VERDICTS[n % 100], "key": key, "reason": None, "detail": None})  # fmt: skip
            if len(rrows) == 20_000 or n == RECORDS:
                conn.execute(insert(import_record), rrows)
                rrows = []
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    log(f"seeded {ASSIGNMENTS:,} assignments of one promotion, {IMPORTS:,} imports, {RECORDS:,} import records in "
        f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    return tenant, email, password, pid, big_id, coupon


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def show(label: str, page: list[float], floor: list[float], target: float, floor_name: str = "floor") -> None:
    p95 = pct(page, 95)
    log(f"{label:<38} p50 {statistics.median(page) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms   "
        f"({floor_name} p95 {pct(floor, 95) * 1000:7.1f} ms)  {'OK' if p95 < target else 'OVER'} < {target * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    global ASSIGNMENTS, IMPORTS, RECORDS, REPORTS_ONLY
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="a PostgreSQL server URL: a database is created there (and dropped)")
    parser.add_argument("--assignments", type=int, default=ASSIGNMENTS)
    parser.add_argument("--reports-only", action="store_true", help="seed and measure the Reports page only")
    args = parser.parse_args()
    ASSIGNMENTS = args.assignments
    if args.reports_only:
        IMPORTS, RECORDS, REPORTS_ONLY = 1, 1, True
    tmp = Path(tempfile.mkdtemp(prefix="admin-reports-bench-"))
    dbname = None
    if args.pg:
        import psycopg

        dbname = f"admin_reports_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{dbname}"')
        url = f"{args.pg.rsplit('/', 1)[0]}/{dbname}"
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    try:
        run(url, tmp)
    finally:
        if dbname:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def run(url: str, tmp: Path) -> None:
    upgrade(url)
    tenant, email, password, pid, big, coupon = seed(url)
    settings = Settings(database_url=url, data_dir=tmp, run_worker=False)
    app = create_app(settings, run_worker=False)
    with TestClient(app) as client:
        admin_sign_in(client, email, password)
        st = app.state.promoflow
        portal = client.portal
        assert portal is not None

        async def ctx() -> Any:
            async with st.db.read() as conn:
                return context_from_row(await TenantService(datetime.now(UTC)).by_name(conn, tenant["name"]))

        tctx = portal.call(ctx)

        def timed(fn: Any, runs: int = RUNS) -> list[float]:
            return _timed(fn, runs)

        def floor(coro_fn: Any) -> list[float]:
            async def many() -> list[float]:
                out = []
                for _ in range(RUNS):
                    t = time.perf_counter()
                    async with st.db.read() as conn:
                        await coro_fn(conn)
                    out.append(time.perf_counter() - t)
                return out

            return portal.call(many)  # type: ignore[no-any-return]

        def get(path: str, **params: Any) -> Any:
            r = client.get(path, params=params) if params else client.get(path)
            assert r.status_code == 200, (path, r.status_code)
            return r

        # ---- Reports: the first view enqueues the snapshot job; the job computes it; then the page reads it.
        today = datetime.now(tctx.tz).date()
        rng = {"from": (today - timedelta(days=DAYS)).isoformat(), "to": today.isoformat()}
        first_view = timed(lambda: get(f"/admin/reports/{pid}", **rng), 1)
        assert "Computing a fresh report" in get(f"/admin/reports/{pid}", **rng).text
        worker = Worker(st.db, SystemClock(), settings=settings, poll_seconds=0.05)
        t = time.perf_counter()
        assert portal.call(worker.run_until_idle) == 1
        job_s = time.perf_counter() - t
        html = get(f"/admin/reports/{pid}", **rng).text
        assigned = re.search(r'data-figure="assigned">([\d,]+)<', html).group(1)  # type: ignore[union-attr]
        assert assigned.replace(",", "") == str(ASSIGNMENTS), assigned
        page = timed(lambda: get(f"/admin/reports/{pid}", **rng))
        csv_day = timed(lambda: get(f"/admin/reports/{pid}/by-day.csv", **rng))
        api = timed(
            lambda: client.get(f"/api/v2/reports/promotions/{pid}", headers={"apikey": tenant["apiKey"]}), 3
        )
        n = f"{ASSIGNMENTS / 1e6:g}M" if ASSIGNMENTS >= 1_000_000 else f"{ASSIGNMENTS // 1000}k"
        log(f"reports first view (no snapshot: enqueue) {first_view[0] * 1000:7.1f} ms")
        log(f"report snapshot job, {n} assignments   {job_s * 1000:9.1f} ms  (API report p50 "
            f"{statistics.median(api) * 1000:.1f} ms)")  # fmt: skip
        show(f"reports page, {n} assignments, 60 days", page, api, 1.0, "API report")
        show("reports CSV per day", csv_day, api, 1.0, "API report")
        if REPORTS_ONLY:
            return

        # ---- Imports
        first = get("/admin/imports").text
        after = re.search(r"after=([0-9a-f-]{36})", first).group(1)  # type: ignore[union-attr]
        for _ in range(100):  # 5,000 imports down
            after = re.search(r"after=([0-9a-f-]{36})", get("/admin/imports", after=after).text).group(1)  # type: ignore[union-attr]
        show("imports list, first page", timed(lambda: get("/admin/imports")),
             floor(lambda c: transfers.list_imports(c, tctx, status=None, after=None)), 0.150)  # fmt: skip
        show("imports list, page 102", timed(lambda: get("/admin/imports", after=after)),
             floor(lambda c: transfers.list_imports(c, tctx, status=None, after=after)), 0.150)  # fmt: skip
        show("imports list, rejected only", timed(lambda: get("/admin/imports", status="rejected")),
             floor(lambda c: transfers.list_imports(c, tctx, status="rejected", after=None)), 0.150)  # fmt: skip
        f = transfers.RecordFilter()
        show("1M-line import, first page", timed(lambda: get(f"/admin/imports/{big}")),
             floor(lambda c: transfers.list_records(c, tctx, big, f, None)), 0.150)  # fmt: skip
        show("1M-line import, page at line 900,000", timed(lambda: get(f"/admin/imports/{big}", after=900_000)),
             floor(lambda c: transfers.list_records(c, tctx, big, f, 900_000)), 0.150)  # fmt: skip
        fv = transfers.RecordFilter(verdict="invalid")
        show("1M-line import, verdict 'invalid' (1 %)", timed(lambda: get(f"/admin/imports/{big}", verdict="invalid")),
             floor(lambda c: transfers.list_records(c, tctx, big, fv, None)), 0.150)  # fmt: skip
        fs = transfers.RecordFilter(search=coupon)
        show("1M-line import, coupon search", timed(lambda: get(f"/admin/imports/{big}", q=coupon), 5),
             floor(lambda c: transfers.list_records(c, tctx, big, fs, None)), 0.150)  # fmt: skip


if __name__ == "__main__":
    main()
