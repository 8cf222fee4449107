"""Fetch and redeem against the floor, on PostgreSQL and SQLite, in one run (issue 15 §1, §2).

wrk (1 thread, --connections, default 64) drives, phase by phase and alternating, for --rounds rounds:

- the floor: a bare ASGI app on uvicorn running one asyncpg statement per request (`bench/floor_app.py` with
  FLOOR_DRIVER=asyncpg): the fetch's join; the redeem's conditional UPDATE + redemption INSERT in one CTE;
- `promoflow api` on PostgreSQL with 1 and with 2 processes (--workers), 'shown' ledger on (the default);
- `promoflow serve` on SQLite (FTP server and worker running in the process), 'shown' on.

Seed: --contacts contacts (6,000) with --per-contact POS assignments each (4: 24,000). Every redeem phase starts
from the same 24,000 unredeemed assignments (the previous phase's redemptions are reset and vacuumed first), so
each phase redeems each assignment at most once. Then, on SQLite, the fetch and the redeem again while a
--import-lines-line (100,000) redemption file of another tenant imports through the same process's FTP server
and worker.

Prints each phase and a table: requests/s over all rounds, the median round's p50/p99, the ratio to the floor's
requests/s and p99, against the targets (PostgreSQL redeem >= 90 % of the floor with p99 <= 1.5x the floor's;
SQLite fetch and redeem >= 50 % of the PostgreSQL floor's rate with p99 < 100 ms).

    python bench/speed_bench.py
    python bench/speed_bench.py --duration 5 --rounds 1 --import-lines 20000     # quicker
Needs wrk (Debian: apt-get install wrk), asyncpg, and PostgreSQL at --pg-url.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, log, start, stop
from core_bench import seed_pg, seed_sqlite, wrk
from latency_bench import progress, upload
from transfer_bench import seed_sqlite as seed_redemption_set
from transfer_bench import write_redemption_file

from promoflow.server.config import Settings
from promoflow.server.migrate import upgrade
from promoflow.server.tenant_setup import create_tenant

FETCH = ("GET", "/api/v2/contacts/", "/promotions?redemptionChannelType=POS", None)
REDEEM = ("POST", "/api/v2/promotions/codes/", "/redeem", '{"redemptionChannel":"POS"}')
FLOOR_FETCH = ("GET", "/fetch/", "", None)
FLOOR_REDEEM = ("POST", "/redeem/", "", "{}")

_RESET = (
    "UPDATE assignment SET redeemed_at = NULL, redeemed_channel = NULL, redeemed_via = NULL, redemption_count = 0"
    " WHERE tenant_id = {t} AND redeemed_at IS NOT NULL",
    "DELETE FROM redemption WHERE tenant_id = {t}",
)


def _mark(conn: Any) -> str:
    return "?" if isinstance(conn, sqlite3.Connection) else "%s"


def ids(conn: Any, tenant: Any, workdir: Path, tag: str) -> tuple[Path, Path]:
    """Shuffled contact ids and shuffled POS assignment ids of the tenant, one per line."""
    contacts = [str(uuid.UUID(str(r[0]))) for r in conn.execute(
        f"SELECT id FROM contact WHERE tenant_id = {_mark(conn)} ORDER BY random()", (tenant,)
    ).fetchall()]  # fmt: skip
    assignments = [str(uuid.UUID(str(r[0]))) for r in conn.execute(
        f"SELECT a.id FROM assignment a JOIN promotion p ON p.id = a.promotion_id WHERE a.tenant_id = {_mark(conn)}"
        " AND (p.channel_mask & 1) != 0 ORDER BY random()", (tenant,)
    ).fetchall()]  # fmt: skip
    files = (workdir / f"contacts-{tag}.txt", workdir / f"assignments-{tag}.txt")
    files[0].write_text("\n".join(contacts) + "\n")
    files[1].write_text("\n".join(assignments) + "\n")
    return files


def reset_pg(url: str, tenant_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in _RESET:
            conn.execute(sql.format(t="%s"), (tenant_id,))
        conn.execute("VACUUM ANALYZE assignment, redemption")


def reset_sqlite(path: Path, tenant_hex: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql in _RESET:
            conn.execute(sql.format(t="?"), (tenant_hex,))
        conn.execute("COMMIT")
    finally:
        conn.close()


def pooled(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "rps": sum(r["requests"] for r in runs) / sum(r["requests"] / r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "p99_worst": max(r["p99"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=6_000)
    p.add_argument("--per-contact", type=int, default=4, help="POS assignments per contact (at most 7)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=int, default=8, help="seconds per measured phase")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--pool", type=int, default=10, help="database connections per process (floor and promoflow)"
    )
    p.add_argument("--import-lines", type=int, default=100_000, help="0: skip the during-import phases")
    p.add_argument("--skip-pg", action="store_true", help="SQLite only (no floor: ratios are not printed)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    assert args.per_contact <= 7, "core_bench seeds 7 POS promotions"

    workdir = Path(tempfile.mkdtemp(prefix="promoflow-speed-"))
    procs = []
    sides: dict[str, dict[str, Any]] = {}
    pg_name = f"promoflow_speed_{uuid.uuid4().hex[:8]}"
    pg_db = args.pg_url.rsplit("/", 1)[0] + "/" + pg_name
    # PostgreSQL here allows 100 connections, shared with other work: every process gets a pool of --pool.
    common_env = {"PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_RECORD_SHOWN": "true",
                  "PROMOFLOW_DB_POOL_SIZE": str(args.pool)}  # fmt: skip
    try:
        if not args.skip_pg:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{pg_name}"')
            upgrade(pg_db)
            tenant_id, key = seed_pg(pg_db, args.contacts, args.per_contact)
            with psycopg.connect(pg_db) as conn:
                contacts, assignments = ids(conn, tenant_id, workdir, "pg")
            log(
                f"seeded PostgreSQL: {args.contacts:,} contacts, {args.contacts * args.per_contact:,} assignments"
            )
            floor_port, port1, port2 = free_port(), free_port(), free_port()
            procs.append(start(
                [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(floor_port),
                 "--log-level", "warning", "--no-access-log"],
                {"FLOOR_DATABASE_URL": pg_db, "FLOOR_TENANT_ID": tenant_id, "FLOOR_DRIVER": "asyncpg",
                 "FLOOR_POOL": str(args.pool)},
                f"http://127.0.0.1:{floor_port}/x",
            ))  # fmt: skip
            for port, workers in ((port1, 1), (port2, 2)):
                procs.append(start(
                    [sys.executable, "-m", "promoflow.cli", "api", "--port", str(port), "--database-url", pg_db,
                     "--workers", str(workers), "--data-dir", str(workdir / f"data-api{workers}")],
                    common_env, f"http://127.0.0.1:{port}/healthz",
                ))  # fmt: skip
            reset = lambda: reset_pg(pg_db, tenant_id)  # noqa: E731
            sides["floor (asyncpg)"] = dict(base=f"http://127.0.0.1:{floor_port}", ops=(FLOOR_FETCH, FLOOR_REDEEM),
                                            key=key, files=(contacts, assignments), reset=reset)  # fmt: skip
            sides["api, PG, 1 process"] = dict(base=f"http://127.0.0.1:{port1}", ops=(FETCH, REDEEM), key=key,
                                               files=(contacts, assignments), reset=reset)  # fmt: skip
            sides["api, PG, 2 processes"] = dict(base=f"http://127.0.0.1:{port2}", ops=(FETCH, REDEEM), key=key,
                                                 files=(contacts, assignments), reset=reset)  # fmt: skip

        data = workdir / "sqlite"
        data.mkdir()
        sqlite_path = data / "promoflow.sqlite3"
        s_url = f"sqlite:///{sqlite_path}"
        upgrade(s_url)
        s_tenant, s_key = seed_sqlite(s_url, args.contacts, args.per_contact)
        conn = sqlite3.connect(sqlite_path)
        s_contacts, s_assignments = ids(conn, uuid.UUID(s_tenant).hex, workdir, "sqlite")
        conn.close()
        importer = None
        if args.import_lines:
            importer = asyncio.run(create_tenant(Settings(database_url=s_url, data_dir=data), datetime.now(UTC), "importer"))  # fmt: skip
            big = seed_redemption_set(
                s_url, uuid.UUID(importer["tenantId"]), {"big": args.import_lines}, 1000
            )
            big_file = workdir / "20260101000000_big_redemptions.xml"
            write_redemption_file(big_file, big["sets"]["big"], datetime.now(UTC) - timedelta(minutes=1))
        log(f"seeded SQLite: {args.contacts:,} contacts, {args.contacts * args.per_contact:,} assignments"
            + (f"; {args.import_lines:,} more of another tenant for the import" if args.import_lines else ""))  # fmt: skip
        s_port, ftp_port = free_port(), free_port()
        procs.append(start(
            [sys.executable, "-m", "promoflow.cli", "serve", "--port", str(s_port), "--ftp-port", str(ftp_port),
             "--database-url", s_url, "--data-dir", str(data)],
            common_env, f"http://127.0.0.1:{s_port}/healthz",
        ))  # fmt: skip
        sides["serve, SQLite"] = dict(base=f"http://127.0.0.1:{s_port}", ops=(FETCH, REDEEM), key=s_key,
                                      files=(s_contacts, s_assignments),
                                      reset=lambda: reset_sqlite(sqlite_path, uuid.UUID(s_tenant).hex))  # fmt: skip

        def phase(label: str, op: str) -> dict[str, float]:
            side = sides[label]
            method, prefix, suffix, body = side["ops"][0 if op == "fetch" else 1]
            ids_file = side["files"][0 if op == "fetch" else 1]
            if op == "redeem":
                side["reset"]()
            return wrk(side["base"], method, prefix, suffix, ids_file, side["key"], body, args.connections,
                       args.duration)  # fmt: skip

        for label in sides:  # warm-up (connections, caches, statement preparation), not counted
            for op in ("fetch", "redeem"):
                side = sides[label]
                method, prefix, suffix, body = side["ops"][0 if op == "fetch" else 1]
                ids_file = side["files"][0 if op == "fetch" else 1]
                wrk(side["base"], method, prefix, suffix, ids_file, side["key"], body, args.connections, 2)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for k in range(args.rounds):
            for op in ("fetch", "redeem"):
                for label in sides:
                    r = phase(label, op)
                    runs.setdefault((label, op), []).append(r)
                    log(f"round {k + 1} {label:<22} {op:<7} {r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  "
                        f"p99 {r['p99']:7.1f} ms  errors {r['errors']}  non-2xx {r['non2xx']}")  # fmt: skip

        during: dict[str, dict[str, Any]] = {}
        if importer is not None:
            log(f"SQLite: uploading the {args.import_lines:,}-line redemption file, then fetch and redeem")
            t0 = time.monotonic()
            reply = upload(ftp_port, importer, big_file)
            assert reply.startswith("226"), reply
            deadline = time.monotonic() + 120
            while progress(s_url, importer, big_file.name)[0] == "queued" and time.monotonic() < deadline:
                time.sleep(
                    0.05
                )  # measured while the records are applied, not while the file is first checked
            for op in ("fetch", "redeem"):
                before = progress(s_url, importer, big_file.name)
                r = phase("serve, SQLite", op)
                after = progress(s_url, importer, big_file.name)
                r["import"] = f"{before[0]} {before[1]:,} → {after[0]} {after[1]:,} of {after[2] or 0:,}"
                during[op] = r
                log(f"during import  serve, SQLite  {op:<7} {r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  "
                    f"p99 {r['p99']:7.1f} ms  non-2xx {r['non2xx']}  import {r['import']}")  # fmt: skip
            deadline = time.monotonic() + 1800
            while (
                progress(s_url, importer, big_file.name)[0] in ("queued", "running")
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)  # waiting for the import to end, to report its duration (not a measured step)
            log(f"the import ended ({progress(s_url, importer, big_file.name)[0]}) {time.monotonic() - t0:.1f} s "
                "after its upload began")  # fmt: skip
    finally:
        for proc in procs:
            stop(proc)
        if not args.skip_pg:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)

    out = {key: pooled(rs) for key, rs in runs.items()}
    floor = {op: out.get(("floor (asyncpg)", op)) for op in ("fetch", "redeem")}
    print()
    print(f"{args.connections} connections, {args.contacts:,} contacts / {args.contacts * args.per_contact:,} POS "
          f"assignments, {args.rounds} round(s) of {args.duration} s per phase, alternating")  # fmt: skip
    print(
        "| | req/s | p50 ms | p99 ms (median round) | p99 worst | vs floor req/s | p99 / floor p99 | errors / non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (label, op), r in out.items():
        f = floor[op]
        ratio = f"{r['rps'] / f['rps']:.0%}" if f else "-"
        tail = f"{r['p99'] / f['p99']:.2f}×" if f else "-"
        print(f"| {op}, {label} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p99_worst']:.1f} | "
              f"{ratio} | {tail} | {r['errors']} / {r['non2xx']} |")  # fmt: skip
    for op, r in during.items():
        f = floor[op]
        ratio = f"{r['rps'] / f['rps']:.0%}" if f else "-"
        print(f"| {op}, serve, SQLite, during the import ({r['import']}) | {r['rps']:,.0f} | {r['p50']:.1f} | "
              f"{r['p99']:.1f} | - | {ratio} | - | {r['errors']} / {r['non2xx']} |")  # fmt: skip
    if floor["redeem"]:
        for label in ("api, PG, 1 process", "api, PG, 2 processes"):
            r, f = out[(label, "redeem")], floor["redeem"]
            ok = r["rps"] >= 0.9 * f["rps"] and r["p99"] <= 1.5 * f["p99"]
            print(
                f"target PG redeem ({label}) >= 90 % of the floor, p99 <= 1.5x: {'met' if ok else 'MISSED'}"
            )
        for op in ("fetch", "redeem"):
            r, f = out[("serve, SQLite", op)], floor[op]
            ok = r["rps"] >= 0.5 * f["rps"] and r["p99"] < 100
            print(f"target SQLite {op} >= 50 % of the PG floor, p99 < 100 ms: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
