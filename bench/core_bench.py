"""Core server benchmark (issue 2): contact-promotions fetch and redeem under load, against the floor.

Seeds a database with N contacts holding N × K assignments, starts the real server (`promoflow api` on
PostgreSQL, `promoflow serve` on SQLite), drives it with wrk (64 connections) and reports requests/s and
p50/p95/p99 for (a) GET /api/v2/contacts/{id}/promotions?redemptionChannelType=POS and (b) redeem (each
assignment redeemed once), and the floor app (bench/floor_app.py: one raw-driver SQL statement per request on the
same uvicorn stack) with the same load, and prints the ratio. On PostgreSQL both servers run side by side and the
load alternates between them phase by phase for --rounds rounds (this is a shared host whose speed drifts; a
floor measured minutes after the server would compare two different machines). Server RSS is read from /proc.

    python bench/core_bench.py                       # full size: 100,000 contacts, 1,000,000 assignments
    python bench/core_bench.py --contacts 10000      # smaller
Needs wrk (Debian: apt-get install wrk) and PostgreSQL at --pg-url.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _common import cpu_seconds, free_port, log, rss_mb, start, stop

PROMOTIONS = 10  # 7 with a POS channel, 3 ECOM only

WRK_LUA = r"""
local ids = {}
local n = 0
local i = 0
local method, prefix, suffix, body = "%(method)s", "%(prefix)s", "%(suffix)s", %(body)s
for line in io.lines("%(ids)s") do n = n + 1; ids[n] = line end
request = function()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format(method, prefix .. ids[i] .. suffix, {["apikey"] = "%(key)s", ["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\"rps\": %%f, \"requests\": %%d, \"errors\": %%d, \"non2xx\": %%d, \"p50\": %%f, \"p95\": %%f, \"p99\": %%f}\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk(
    url: str,
    method: str,
    prefix: str,
    suffix: str,
    ids_file: Path,
    key: str,
    body: str | None,
    connections: int,
    duration: int,
) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        WRK_LUA
        % {
            "method": method,
            "prefix": prefix,
            "suffix": suffix,
            "ids": ids_file,
            "key": key,
            "body": "nil" if body is None else json.dumps(body),
        }
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    m = re.search(r"JSON(\{.*\})", out)
    assert m, out
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------------------------ seeding


async def _tenant_and_promotions(url: str) -> tuple[str, str, list[str]]:
    from sqlalchemy import select

    from promoflow.server.db import Database
    from promoflow.server.models import tenant
    from promoflow.server.promotion.service import PromotionService
    from promoflow.server.tenant.service import TenantService, context_from_row
    from promoflow.wire.engage import MultichannelPromotionCreate

    now = datetime.now(UTC)
    db = Database(url, pool_size=2)
    async with db.write() as conn:
        new = await TenantService(now).create(
            conn, f"bench-{uuid.uuid4().hex[:8]}", settings={"rateLimitPerSecond": 0}
        )
        ctx = context_from_row((await conn.execute(select(tenant).where(tenant.c.id == new.tenant_id))).one())
        svc = PromotionService(ctx, now)
        pos_ids = []
        for i in range(PROMOTIONS):
            channels = ([{"type": "POS", "valueType": "PERCENT", "value": "10"}] if i < 7 else []) + [
                {"type": "ECOM", "valueType": "MONEY", "value": "50"}
            ]
            body = MultichannelPromotionCreate.model_validate(
                {
                    "name": f"bench promotion {i}",
                    "externalId": f"BENCH-{i}",
                    "validity": {"startDate": "2024-01-01", "endDate": "2099-12-31"},
                    "presentation": {"heading": f"Offer {i}", "description": "Benchmark offer"},
                    "redemptionChannels": channels,
                }
            )
            p = await svc.create(conn, body)
            await svc.activate(conn, str(p.id))
            if i < 7:
                pos_ids.append(str(p.id))
    await db.dispose()
    return str(new.tenant_id), new.api_key, pos_ids


def timed_wrk(pid: int, *args: Any) -> dict[str, float]:
    """`wrk`, with the server's CPU time over the phase (its process and workers, from /proc): per request, a
    figure that holds on a shared machine, where requests/s do not."""
    before = cpu_seconds(pid)
    r = wrk(*args)
    r["cpu_s"] = cpu_seconds(pid) - before
    r["cpu_us"] = 1e6 * r["cpu_s"] / max(1, r["requests"])
    return r


def seed_pg(url: str, contacts: int, per_contact: int) -> tuple[str, str]:
    tenant_id, key, _ = asyncio.run(_tenant_and_promotions(url))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO contact (id, tenant_id, contact_type, attributes, preferences, key_value, email,
                                    member_number, approved, created_at, updated_at)
               SELECT gen_random_uuid(), %(t)s, 'Member',
                      jsonb_build_object('email', 'c' || g || '@bench.example', 'memberNumber', lpad(g::text, 9, '0')),
                      '{}'::jsonb, 'c' || g || '@bench.example', 'c' || g || '@bench.example', lpad(g::text, 9, '0'),
                      true, now(), now()
               FROM generate_series(1, %(n)s) g""",
            {"t": tenant_id, "n": contacts},
        )
        conn.execute(
            """INSERT INTO assignment (id, tenant_id, promotion_id, contact_id, valid_from, valid_to, source,
                                       created_at, redemption_count, reactivation_count)
               SELECT gen_random_uuid(), %(t)s, p.id, c.id, now() - interval '1 day', now() + interval '365 days',
                      'bench', now(), 0, 0
               FROM contact c CROSS JOIN (SELECT id FROM promotion WHERE tenant_id = %(t)s
                                          ORDER BY external_id LIMIT %(k)s) p
               WHERE c.tenant_id = %(t)s""",
            {"t": tenant_id, "k": per_contact},
        )
        # A live database has been vacuumed (autovacuum): hint bits set, visibility map filled. Without this the
        # first writes to each freshly loaded page pay for that, and whichever side is measured first pays most.
        conn.execute("VACUUM ANALYZE")
    return tenant_id, key


def seed_sqlite(url: str, contacts: int, per_contact: int) -> tuple[str, str]:
    from promoflow.server.db import make_sync_engine
    from promoflow.server.models import assignment, contact, promotion

    tenant_id, key, _ = asyncio.run(_tenant_and_promotions(url))
    tid = uuid.UUID(tenant_id)
    now = datetime.now(UTC)
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        promos = [
            r.id
            for r in conn.execute(
                promotion.select()
                .where(promotion.c.tenant_id == tid)
                .order_by(promotion.c.external_id)
                .limit(per_contact)
            )
        ]
        batch_c, batch_a = [], []
        for g in range(1, contacts + 1):
            cid = uuid.uuid4()
            email = f"c{g}@bench.example"
            batch_c.append(
                {
                    "id": cid,
                    "tenant_id": tid,
                    "contact_type": "Member",
                    "attributes": {"email": email, "memberNumber": f"{g:09d}"},
                    "preferences": {},
                    "key_value": email,
                    "email": email,
                    "member_number": f"{g:09d}",
                    "approved": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for pid in promos:
                batch_a.append(
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": tid,
                        "promotion_id": pid,
                        "contact_id": cid,
                        "valid_from": now - timedelta(days=1),
                        "valid_to": now + timedelta(days=365),
                        "source": "bench",
                        "created_at": now,
                        "redemption_count": 0,
                        "reactivation_count": 0,
                    }
                )
            if len(batch_a) >= 50_000:
                conn.execute(contact.insert(), batch_c)
                conn.execute(assignment.insert(), batch_a)
                batch_c, batch_a = [], []
        if batch_c:
            conn.execute(contact.insert(), batch_c)
            conn.execute(assignment.insert(), batch_a)
    engine.dispose()
    return tenant_id, key


def id_files(url: str, tenant_id: str, workdir: Path) -> tuple[Path, Path, Path]:
    """Contact ids (shuffled) and two disjoint sets of POS-redeemable assignment ids (server, floor)."""
    from sqlalchemy import text

    from promoflow.server.db import make_sync_engine

    engine = make_sync_engine(url)
    tid = uuid.UUID(tenant_id)
    with engine.connect() as conn:
        tparam = tid if conn.dialect.name == "postgresql" else tid.hex
        contacts = [
            str(uuid.UUID(str(r[0])))
            for r in conn.execute(
                text("SELECT id FROM contact WHERE tenant_id = :t ORDER BY random()"), {"t": tparam}
            )
        ]
        assignments = [
            str(uuid.UUID(str(r[0])))
            for r in conn.execute(
                text(
                    "SELECT a.id FROM assignment a JOIN promotion p ON p.id = a.promotion_id "
                    "WHERE a.tenant_id = :t AND (p.channel_mask & 1) != 0 ORDER BY random() LIMIT 800000"
                ),
                {"t": tparam},
            )
        ]
    engine.dispose()
    half = len(assignments) // 2
    files = (workdir / "contacts.txt", workdir / "assign_server.txt", workdir / "assign_floor.txt")
    files[0].write_text("\n".join(contacts) + "\n")
    files[1].write_text("\n".join(assignments[:half]) + "\n")
    files[2].write_text("\n".join(assignments[half:]) + "\n")
    return files


# ---------------------------------------------------------------------------------------------- running


def measure(
    label: str,
    base: str,
    key: str,
    files: tuple[Path, Path, Path],
    floor: bool,
    args: argparse.Namespace,
    pid: int,
) -> dict[str, dict[str, float]]:
    contacts, assign_server, assign_floor = files
    if floor:
        fetch = ("GET", "/fetch/", "", None)
        redeem = ("POST", "/redeem/", "", "{}")
        redeem_ids = assign_floor
    else:
        fetch = ("GET", "/api/v2/contacts/", "/promotions?redemptionChannelType=POS", None)
        redeem = ("POST", "/api/v2/promotions/codes/", "/redeem", '{"redemptionChannel":"POS"}')
        redeem_ids = assign_server
    results = {}
    # warm-up (connections, caches), not counted
    wrk(base, fetch[0], fetch[1], fetch[2], contacts, key, fetch[3], args.connections, 3)
    for name, (method, prefix, suffix, body), ids in (
        ("fetch", fetch, contacts),
        ("redeem", redeem, redeem_ids),
    ):
        r = timed_wrk(pid, base, method, prefix, suffix, ids, key, body, args.connections, args.duration)
        r["rss_mb"] = rss_mb(pid)
        results[name] = r
        log(
            f"{label:<22} {name:<7} {r['rps']:9.0f} req/s  p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  "
            f"p99 {r['p99']:6.1f} ms  errors {r['errors']}  non-2xx {r['non2xx']}  RSS {r['rss_mb']:.0f} MB  "
            f"CPU {r['cpu_us']:.0f} µs/request"
        )
    return results


def _chunks(path: Path, parts: int) -> list[Path]:
    """Split an id file into ``parts`` disjoint files (each round redeems assignments of its own)."""
    ids = path.read_text().split()
    size = len(ids) // parts
    out = []
    for k in range(parts):
        chunk = path.with_name(f"{path.stem}.{k}.txt")
        chunk.write_text("\n".join(ids[k * size : (k + 1) * size]) + "\n")
        out.append(chunk)
    return out


def _rotated(path: Path, parts: int) -> list[Path]:
    """The same ids starting at a different place each round (each round fetches other contacts first)."""
    ids = path.read_text().split()
    out = []
    for k in range(parts):
        at = k * len(ids) // parts
        chunk = path.with_name(f"{path.stem}.{k}.txt")
        chunk.write_text("\n".join(ids[at:] + ids[:at]) + "\n")
        out.append(chunk)
    return out


def _pooled(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds together: requests/s over all rounds, the median round's percentiles, the worst round's p99."""
    out = {"rps": sum(r["requests"] for r in runs) / sum(r["requests"] / r["rps"] for r in runs)}
    for k in ("p50", "p95", "p99"):
        out[k] = statistics.median(r[k] for r in runs)
    out["p99_worst"] = max(r["p99"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    out["cpu_us"] = 1e6 * sum(r["cpu_s"] for r in runs) / max(1, out["requests"])
    out["rounds"] = runs  # type: ignore[assignment]
    return out


def run_pg(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """promoflow and the floor run side by side on one database; the load alternates between them phase by
    phase (fetch promoflow, fetch floor, redeem promoflow, redeem floor) for --rounds rounds, so a change in the
    machine's speed during the run (a shared host) hits both alike."""
    name = f"promoflow_bench_{uuid.uuid4().hex[:8]}"  # of its own: other runs may share the server
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return _run_pg(args, workdir, args.pg_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_pg(args: argparse.Namespace, workdir: Path, url: str) -> dict[str, object]:
    from promoflow.server.migrate import upgrade

    upgrade(url)
    t0 = time.monotonic()
    tenant_id, key = seed_pg(url, args.contacts, args.per_contact)
    log(
        f"seeded PostgreSQL: {args.contacts} contacts, {args.contacts * args.per_contact} assignments "
        f"in {time.monotonic() - t0:.0f} s"
    )
    contacts, assign_server, assign_floor = id_files(url, tenant_id, workdir)
    rounds = args.rounds
    fetch_ids = _rotated(contacts, rounds)
    # One more chunk of assignments than rounds: the first is redeemed in the warm-up, not counted.
    redeem_ids = {"server": _chunks(assign_server, rounds + 1), "floor": _chunks(assign_floor, rounds + 1)}
    port, floor_port = free_port(), free_port()
    server = start(
        [sys.executable, "-m", "promoflow.cli", "api", "--port", str(port), "--database-url", url,
         "--workers", str(args.api_workers), "--data-dir", str(workdir / "data")],
        {"PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_RECORD_SHOWN": "false" if args.no_shown else "true"},
        f"http://127.0.0.1:{port}/healthz",
    )  # fmt: skip
    floor = start(
        [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(floor_port), "--workers",
         str(args.api_workers), "--log-level", "warning", "--no-access-log"],
        {"FLOOR_DATABASE_URL": url, "FLOOR_TENANT_ID": tenant_id},
        f"http://127.0.0.1:{floor_port}/x",
    )  # fmt: skip
    sides = {
        "server": ("promoflow (PostgreSQL)", f"http://127.0.0.1:{port}", server.pid,
                   ("GET", "/api/v2/contacts/", "/promotions?redemptionChannelType=POS", None),
                   ("POST", "/api/v2/promotions/codes/", "/redeem", '{"redemptionChannel":"POS"}')),
        "floor": ("floor (raw psycopg)", f"http://127.0.0.1:{floor_port}", floor.pid,
                  ("GET", "/fetch/", "", None), ("POST", "/redeem/", "", "{}")),
    }  # fmt: skip
    runs: dict[str, dict[str, list[dict[str, float]]]] = {side: {"fetch": [], "redeem": []} for side in sides}
    try:
        for side, (_, base, _, fetch, redeem) in sides.items():  # warm-up (connections, caches), not counted
            wrk(base, *fetch[:3], contacts, key, fetch[3], args.connections, 3)
            wrk(base, *redeem[:3], redeem_ids[side][0], key, redeem[3], args.connections, 3)
        for k in range(rounds):
            for op in ("fetch", "redeem"):
                for side, (label, base, pid, fetch, redeem) in sides.items():
                    method, prefix, suffix, body = fetch if op == "fetch" else redeem
                    ids = fetch_ids[k] if op == "fetch" else redeem_ids[side][k + 1]
                    r = timed_wrk(pid, base, method, prefix, suffix, ids, key, body, args.connections,
                                  args.duration)  # fmt: skip
                    r["rss_mb"] = rss_mb(pid)
                    runs[side][op].append(r)
                    log(
                        f"round {k + 1} {label:<22} {op:<7} {r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  "
                        f"p95 {r['p95']:6.1f} ms  p99 {r['p99']:6.1f} ms  errors {r['errors']}  "
                        f"non-2xx {r['non2xx']}  RSS {r['rss_mb']:.0f} MB  CPU {r['cpu_us']:.0f} µs/request"
                    )
    finally:
        stop(server)
        stop(floor)
    out = {side: {op: _pooled(rs) for op, rs in ops.items()} for side, ops in runs.items()}
    for op in ("fetch", "redeem"):
        srv, flr = out["server"][op], out["floor"][op]
        log(
            f"{op}: promoflow {srv['rps']:.0f} req/s vs floor {flr['rps']:.0f} req/s = {srv['rps'] / flr['rps']:.0%} "
            f"of the floor (target >= 60%); p99 median round {srv['p99']:.1f} ms, worst {srv['p99_worst']:.1f} ms "
            f"(floor {flr['p99']:.1f} / {flr['p99_worst']:.1f} ms; target < 50 ms); "
            f"RSS {srv['rss_mb']:.0f} MB (target < 400 MB); server CPU {srv['cpu_us']:.0f} µs/request "
            f"(floor {flr['cpu_us']:.0f})"
        )
    return out


def run_sqlite(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    data = workdir / "sqlite-data"
    data.mkdir()
    url = f"sqlite:///{data / 'promoflow.sqlite3'}"
    from promoflow.server.migrate import upgrade

    upgrade(url)
    t0 = time.monotonic()
    tenant_id, key = seed_sqlite(url, args.sqlite_contacts, args.per_contact)
    log(
        f"seeded SQLite: {args.sqlite_contacts} contacts, {args.sqlite_contacts * args.per_contact} assignments "
        f"in {time.monotonic() - t0:.0f} s"
    )
    files = id_files(url, tenant_id, workdir)
    port = free_port()
    server = start(
        [
            sys.executable,
            "-m",
            "promoflow.cli",
            "serve",
            "--port",
            str(port),
            "--database-url",
            url,
            "--data-dir",
            str(data),
            "--no-ftp",
            "--no-worker",
        ],
        {"PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_RECORD_SHOWN": "false" if args.no_shown else "true"},
        f"http://127.0.0.1:{port}/healthz",
    )
    try:
        return {
            "server": measure(
                "promoflow (SQLite)", f"http://127.0.0.1:{port}", key, files, False, args, server.pid
            )
        }
    finally:
        stop(server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--sqlite-contacts", type=int, default=100_000)
    p.add_argument("--per-contact", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    p.add_argument("--rounds", type=int, default=3, help="PostgreSQL: alternating promoflow/floor rounds")
    p.add_argument("--api-workers", type=int, default=1, help="API processes (same for the floor)")
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument(
        "--no-shown", action="store_true", help="run the server without the ledger's 'shown' events (issue 3)"
    )
    p.add_argument("--skip-pg", action="store_true")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        out = {}
        if not args.skip_pg:
            pgdir = workdir / "pg"
            pgdir.mkdir()
            out["postgresql"] = run_pg(args, pgdir)
        if not args.skip_sqlite:
            sdir = workdir / "sqlite"
            sdir.mkdir()
            out["sqlite"] = run_sqlite(args, sdir)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
