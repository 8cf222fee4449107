"""Audit log speed (issue 14 §4): with 1,000,000 entries in one tenant (and 100,000 in another), the Audit log page
— first page, a deep keyset page, and filtered by actor, actor kind, object (a promotion, a contact), action and a
day — and the History slice of a contact card and a promotion page render server-side (the whole HTTP request
through the app: session, queries, template) in p95 < 150 ms. Each figure is printed next to its floor, measured in the same run: the same
page of entries read by ``audit.service.page`` on a bare connection (no HTTP, no session, no template). The CSV of
one day is timed too (no target).

    python bench/admin_audit_bench.py                 # SQLite in a temporary directory
    python bench/admin_audit_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    python bench/admin_audit_bench.py --entries 200000   # smaller, for a quick check

The machine may be shared: read the figures as indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import admin_sign_in, log
from sqlalchemy import insert
from starlette.testclient import TestClient

from promoflow.server.admin.users import UserService
from promoflow.server.audit.service import AuditFilter, page
from promoflow.server.config import Settings
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.models import audit_event
from promoflow.server.tenant_setup import create_tenant

RUNS = 40
TARGET = 0.150
DAYS = 365
USERS = [f"user{i}@example.com" for i in range(20)]
KEYS = [f"till-{i}" for i in range(50)]
ACTIONS = [("contact.update", "contact"), ("contact.create", "contact"), ("assignment.create", "assignment"),
           ("redemption.reactivate", "assignment"), ("promotion.update", "promotion"),
           ("promotion.create", "promotion"), ("promotion.activate", "promotion")]  # fmt: skip


def seed_entries(url: str, tenant_id: uuid.UUID, n: int, start: datetime, seed: int) -> tuple[list[uuid.UUID], list[uuid.UUID]]:  # fmt: skip
    """``n`` entries over a year: 70 % API keys, 25 % people, 4.9 % system, 0.1 % file imports; about 100,000
    contacts and 10,000 promotions as their objects. Returns the contact and promotion ids used."""
    rnd = random.Random(seed)
    contacts = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(100_000)]
    promotions = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(10_000)]
    engine = make_sync_engine(url)
    step = timedelta(seconds=DAYS * 86400 / n)
    rows: list[dict[str, Any]] = []
    try:
        with engine.begin() as conn:
            for i in range(n):
                r = rnd.random()
                if r < 0.70:
                    kind, actor = "api_key", rnd.choice(KEYS)
                elif r < 0.95:
                    kind, actor = "user", rnd.choice(USERS)
                elif r < 0.999:
                    kind, actor = "system", "cli (ops)"
                else:
                    kind, actor = "file", f"2026_{i}_contacts.xml"
                action, otype = rnd.choice(ACTIONS)
                cid = rnd.choice(contacts) if otype in ("contact", "assignment") else None
                pid = rnd.choice(promotions) if otype in ("promotion", "assignment") else None
                oid = (
                    cid
                    if otype == "contact"
                    else pid
                    if otype == "promotion"
                    else uuid.UUID(int=rnd.getrandbits(128))
                )
                rows.append({
                    "tenant_id": tenant_id, "at": start + step * i, "actor_kind": kind, "actor": actor,
                    "actor_ref": None, "action": action, "object_type": otype, "object_id": str(oid),
                    "contact_id": cid, "promotion_id": pid,
                    "before": {"firstName": "Ada"} if action.endswith("update") else None,
                    "after": {"firstName": "Augusta", "lastName": "King"},
                })  # fmt: skip
                if len(rows) == 20_000:
                    conn.execute(insert(audit_event), rows)
                    rows = []
            if rows:
                conn.execute(insert(audit_event), rows)
    finally:
        engine.dispose()
    return contacts, promotions


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def show(label: str, taken: list[float], floor: list[float]) -> bool:
    p95 = pct(taken, 95)
    ok = p95 < TARGET
    log(f"{label:<36} p50 {statistics.median(taken) * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms   "
        f"(floor p95 {pct(floor, 95) * 1000:6.1f} ms)  {'OK' if ok else 'OVER'} < {TARGET * 1000:.0f} ms")  # fmt: skip
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="a PostgreSQL server URL: a database is created there (and dropped)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    dbname = None
    if args.pg:
        import psycopg

        dbname = f"audit_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{dbname}"')
        url = f"{args.pg.rsplit('/', 1)[0]}/{dbname}"
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    try:
        run(url, tmp, args.entries)
    finally:
        if dbname:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def run(url: str, tmp: Path, n: int) -> None:
    upgrade(url)
    settings = Settings(database_url=url, data_dir=tmp, run_worker=False)
    now = datetime.now(UTC)
    tenant = asyncio.run(create_tenant(settings, now, f"bench-{uuid.uuid4().hex[:8]}"))
    other = asyncio.run(create_tenant(settings, now, f"other-{uuid.uuid4().hex[:8]}"))
    email = "auditor@example.com"

    async def user() -> str | None:
        db = Database(url, pool_size=2)
        try:
            async with db.write() as conn:
                return (await UserService(now).create(conn, email, tenant["name"], "admin")).password
        finally:
            await db.dispose()

    password = asyncio.run(user())
    start = now - timedelta(days=DAYS)
    t = time.perf_counter()
    contacts, promotions = seed_entries(url, uuid.UUID(tenant["tenantId"]), n, start, 1)
    seed_entries(url, uuid.UUID(other["tenantId"]), n // 10, start, 2)
    log(f"seeded {n:,} + {n // 10:,} entries in {time.perf_counter() - t:.0f} s")
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE audit_event")
    else:
        engine = make_sync_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()

    app = create_app(settings, run_worker=False)
    with TestClient(app) as client:
        admin_sign_in(client, email, password)
        st = app.state.promoflow
        portal = client.portal
        assert portal is not None
        tid = uuid.UUID(tenant["tenantId"])

        def get(path: str, **params: str) -> Any:
            r = client.get(path, params=params) if params else client.get(path)
            assert r.status_code == 200, (path, r.status_code)
            return r

        def timed(path: str, params: list[dict[str, str]]) -> list[float]:
            out = []
            for i in range(RUNS):
                t = time.perf_counter()
                get(path, **params[i % len(params)])
                out.append(time.perf_counter() - t)
            return out

        def floor(filters: list[AuditFilter], after: str | None = None) -> list[float]:
            async def many() -> list[float]:
                out = []
                for i in range(RUNS):
                    t = time.perf_counter()
                    async with st.db.read() as conn:
                        await page(conn, tid, filters[i % len(filters)], after, 50)
                    out.append(time.perf_counter() - t)
                return out

            return portal.call(many)  # type: ignore[no-any-return]

        rnd = random.Random(7)
        ok = True
        ok &= show("audit log, first page", timed("/admin/audit", [{}]), floor([AuditFilter()]))
        after = None
        for _ in range(20):  # 1,000 entries down
            after = re.search(
                r"after=([A-Za-z0-9_-]+)\">Older",
                get("/admin/audit", **({"after": after} if after else {})).text,
            ).group(1)  # type: ignore[union-attr]
        assert after is not None
        ok &= show(
            "audit log, page 21", timed("/admin/audit", [{"after": after}]), floor([AuditFilter()], after)
        )
        users = rnd.sample(USERS, 10)
        ok &= show("filter by actor (a person)", timed("/admin/audit", [{"actor": u} for u in users]),
                   floor([AuditFilter(actor=u) for u in users]))  # fmt: skip
        from promoflow.server.audit import ActorKind

        ok &= show("filter by actor kind (file: 0.1 %)", timed("/admin/audit", [{"kind": "file"}]),
                   floor([AuditFilter(actor_kind=ActorKind.FILE)]))  # fmt: skip
        pids = rnd.sample(promotions, 20)
        ok &= show("filter by object (a promotion)", timed("/admin/audit", [{"object": str(p)} for p in pids]),
                   floor([AuditFilter(object_id=str(p)) for p in pids]))  # fmt: skip
        some = rnd.sample(contacts, 20)
        ok &= show("filter by object (a contact)", timed("/admin/audit", [{"object": str(c)} for c in some]),
                   floor([AuditFilter(object_id=str(c)) for c in some]))  # fmt: skip
        ok &= show("filter by action (reactivations)", timed("/admin/audit", [{"action": "redemption.reactivate"}]),
                   floor([AuditFilter(action="redemption.reactivate")]))  # fmt: skip
        days = [(start + timedelta(days=rnd.randrange(1, DAYS - 1))).astimezone(st.settings and __import__("zoneinfo").ZoneInfo("Europe/Stockholm")).date().isoformat() for _ in range(10)]  # fmt: skip
        ok &= show("filter by one day", timed("/admin/audit", [{"from": d, "to": d} for d in days]),
                   floor([AuditFilter(since=datetime.fromisoformat(d).replace(tzinfo=UTC),
                                      until=datetime.fromisoformat(d).replace(tzinfo=UTC) + timedelta(days=1)) for d in days]))  # fmt: skip
        cids = rnd.sample(contacts, 20)
        ok &= show("a contact's history (filter)", timed("/admin/audit", [{"contact": str(c)} for c in cids]),
                   floor([AuditFilter(contact_id=c) for c in cids]))  # fmt: skip
        ok &= show("a promotion's history (filter)", timed("/admin/audit", [{"promotion": str(p)} for p in pids]),
                   floor([AuditFilter(promotion_id=p) for p in pids]))  # fmt: skip
        t = time.perf_counter()
        csv_text = get("/admin/audit.csv", **{"from": days[0], "to": days[0]}).text
        rows = csv_text.count("\n") - 1
        log(f"{'CSV of one day':<36} {rows:,} rows in {(time.perf_counter() - t) * 1000:.0f} ms")
        log("all within target" if ok else "SOME OVER TARGET")


if __name__ == "__main__":
    main()
