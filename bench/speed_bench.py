"""Fetch and redeem against the floor, on PostgreSQL and SQLite, in one run (issue 15 §1, §2).

wrk (1 thread, --connections, default 64) drives, phase by phase and alternating, for --rounds rounds:

- the floor: a bare ASGI app on uvicorn running one asyncpg statement per request (`bench/floor_app.py` with
  FLOOR_DRIVER=asyncpg): the fetch's join; the redeem's conditional UPDATE + redemption INSERT in one CTE;
- `promoflow api` on PostgreSQL with 1 and with 2 processes (--workers), 'shown' ledger on (the default);
- `promoflow serve` on SQLite (FTP server and worker running in the process), 'shown' on.

Seed: contacts with --per-contact POS assignments each (4); the fetch asks for --contacts (6,000) of them. Every
redeem phase redeems assignments of its own, never asked for by another phase: --duration x --redeem-rate of them
(a rate no side should reach; a phase that runs out wraps around and is refused), so the seed holds as many as all
the phases need. Before every phase the previous phases' redemptions are reset and the tables vacuumed, so each
phase starts from the same database; and a request of an earlier phase that the server answers late (after wrk
stopped, after the reset) redeems an assignment no later phase asks for. A redeem phase with a non-2xx answer is
reported INVALID: in this bench a redeem never fails. Then, on SQLite, the fetch and the redeem again while a
--import-lines-line (100,000) redemption file of another tenant imports through the same process's FTP server
and worker.

Prints each phase and a table: requests/s over all rounds, the median round's p50/p99, the server's CPU time per
request (user + system of the server's processes, from /proc: the figure least moved by other load on the
machine), the ratio to the floor's requests/s and p99, against the targets (PostgreSQL redeem >= 90 % of the
floor with p99 <= 1.5x the floor's; SQLite fetch and redeem >= 50 % of the PostgreSQL floor's rate with p99 <
100 ms).

    python bench/speed_bench.py
    python bench/speed_bench.py --duration 5 --rounds 1 --import-lines 20000     # quicker
    python bench/speed_bench.py --skip-sqlite --compare-src ../before/src    # PostgreSQL, and `api` as it was
Needs wrk (Debian: apt-get install wrk), asyncpg, and PostgreSQL at --pg-url.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sqlite3
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, free_port, log, start, stop
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


class Slices:
    """The tenant's POS assignment ids (shuffled), handed out in slices that no two phases share."""

    def __init__(self, ids: list[str], workdir: Path, tag: str) -> None:
        self.ids = ids
        self.workdir = workdir
        self.tag = tag
        self.taken = 0

    def take(self, n: int) -> Path:
        """A file of the next ``n`` ids, one per line."""
        part = self.ids[self.taken : self.taken + n]
        assert len(part) == n, f"the seed holds {len(self.ids):,} assignments: too few for every phase"
        path = self.workdir / f"assignments-{self.tag}-{self.taken}.txt"
        path.write_text("\n".join(part) + "\n")
        self.taken += n
        return path


def ids(conn: Any, tenant: Any, workdir: Path, tag: str, fetched: int) -> tuple[Path, Slices]:
    """A file of ``fetched`` shuffled contact ids of the tenant, one per line, and its POS assignment ids."""
    contacts = [str(uuid.UUID(str(r[0]))) for r in conn.execute(
        f"SELECT id FROM contact WHERE tenant_id = {_mark(conn)} ORDER BY random() LIMIT {fetched}", (tenant,)
    ).fetchall()]  # fmt: skip
    assignments = [str(uuid.UUID(str(r[0]))) for r in conn.execute(
        f"SELECT a.id FROM assignment a JOIN promotion p ON p.id = a.promotion_id WHERE a.tenant_id = {_mark(conn)}"
        " AND (p.channel_mask & 1) != 0 ORDER BY random()", (tenant,)
    ).fetchall()]  # fmt: skip
    path = workdir / f"contacts-{tag}.txt"
    path.write_text("\n".join(contacts) + "\n")
    return path, Slices(assignments, workdir, tag)


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
        "cpu_us": sum(r["cpu_us"] * r["requests"] for r in runs) / sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
    }


def invalid(op: str, r: dict[str, Any]) -> bool:
    """A redeem phase with a refusal measured something else than redeems (the bench's redeems never fail)."""
    return op == "redeem" and r["non2xx"] > 0


WARMUP = 2  # seconds of each side's warm-up phases (not counted)


def contacts_for(args: argparse.Namespace, sides: int, extra_phases: int = 0) -> int:
    """Contacts to seed: the fetched ones, or more when the redeem phases of ``sides`` sides (a warm-up and
    --rounds measured phases each, and ``extra_phases`` more) need more assignments."""
    seconds = sides * (WARMUP + args.rounds * args.duration) + extra_phases * args.duration
    return max(args.contacts, math.ceil(args.redeem_rate * seconds / args.per_contact))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--contacts", type=int, default=6_000)
    p.add_argument("--per-contact", type=int, default=4, help="POS assignments per contact (at most 7)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=int, default=8, help="seconds per measured phase")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--redeem-rate",
        type=int,
        default=12_000,
        help="assignments of its own per second of a redeem phase (more than any side redeems)",
    )
    p.add_argument(
        "--pool", type=int, default=10, help="database connections per process (floor and promoflow)"
    )
    p.add_argument("--import-lines", type=int, default=100_000, help="0: skip the during-import phases")
    p.add_argument("--skip-pg", action="store_true", help="SQLite only (no floor: ratios are not printed)")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy samples of `serve` in the SQLite phases (raw format; the last round's)",
    )
    p.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only (the floor and `api`)")
    p.add_argument(
        "--compare-src",
        metavar="DIR",
        help="also `api` (1 process) from the package under DIR (a source tree's src/, on PYTHONPATH)",
    )
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
            seeded = contacts_for(args, sides=4 if args.compare_src else 3)
            tenant_id, key = seed_pg(pg_db, seeded, args.per_contact)
            with psycopg.connect(pg_db) as conn:
                contacts, assignments = ids(conn, tenant_id, workdir, "pg", args.contacts)
            log(f"seeded PostgreSQL: {seeded:,} contacts, {seeded * args.per_contact:,} assignments")
            floor_port = free_port()
            floor = start(
                [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(floor_port),
                 "--log-level", "warning", "--no-access-log"],
                {"FLOOR_DATABASE_URL": pg_db, "FLOOR_TENANT_ID": tenant_id, "FLOOR_DRIVER": "asyncpg",
                 "FLOOR_POOL": str(args.pool)},
                f"http://127.0.0.1:{floor_port}/x",
            )  # fmt: skip
            procs.append(floor)
            reset = lambda: reset_pg(pg_db, tenant_id)  # noqa: E731
            sides["floor (asyncpg)"] = dict(base=f"http://127.0.0.1:{floor_port}", ops=(FLOOR_FETCH, FLOOR_REDEEM),
                                            key=key, contacts=contacts, slices=assignments, reset=reset,
                                            proc=floor)  # fmt: skip
            apis = [("", workers, {}) for workers in (1, 2)]
            if (
                args.compare_src
            ):  # the same server from another source tree (PYTHONPATH), e.g. before a change
                apis.append((f" ({args.compare_src})", 1, {"PYTHONPATH": args.compare_src}))
            for tag, workers, env in apis:
                port = free_port()
                api = start(
                    [sys.executable, "-m", "promoflow.cli", "api", "--port", str(port), "--database-url", pg_db,
                     "--workers", str(workers), "--data-dir", str(workdir / f"data-api{workers}{len(procs)}")],
                    {**common_env, **env}, f"http://127.0.0.1:{port}/healthz",
                )  # fmt: skip
                procs.append(api)
                sides[f"api{tag}, PG, {workers} process{'es' if workers > 1 else ''}"] = dict(
                    base=f"http://127.0.0.1:{port}", ops=(FETCH, REDEEM), key=key, contacts=contacts,
                    slices=assignments, reset=reset, proc=api,
                )  # fmt: skip

        importer = None
        if not args.skip_sqlite:
            data = workdir / "sqlite"
            data.mkdir()
            sqlite_path = data / "promoflow.sqlite3"
            s_url = f"sqlite:///{sqlite_path}"
            upgrade(s_url)
            s_seeded = contacts_for(args, sides=1, extra_phases=1 if args.import_lines else 0)
            s_tenant, s_key = seed_sqlite(s_url, s_seeded, args.per_contact)
            conn = sqlite3.connect(sqlite_path)
            s_contacts, s_assignments = ids(conn, uuid.UUID(s_tenant).hex, workdir, "sqlite", args.contacts)
            conn.close()
            if args.import_lines:
                importer = asyncio.run(create_tenant(Settings(database_url=s_url, data_dir=data), datetime.now(UTC), "importer"))  # fmt: skip
                big = seed_redemption_set(
                    s_url, uuid.UUID(importer["tenantId"]), {"big": args.import_lines}, 1000
                )
                big_file = workdir / "20260101000000_big_redemptions.xml"
                write_redemption_file(big_file, big["sets"]["big"], datetime.now(UTC) - timedelta(minutes=1))
            log(f"seeded SQLite: {s_seeded:,} contacts, {s_seeded * args.per_contact:,} assignments"
                + (f"; {args.import_lines:,} more of another tenant for the import" if args.import_lines else ""))  # fmt: skip
            s_port, ftp_port = free_port(), free_port()
            serve = start(
                [sys.executable, "-m", "promoflow.cli", "serve", "--port", str(s_port), "--ftp-port", str(ftp_port),
                 "--database-url", s_url, "--data-dir", str(data)],
                common_env, f"http://127.0.0.1:{s_port}/healthz",
            )  # fmt: skip
            procs.append(serve)
            sides["serve, SQLite"] = dict(base=f"http://127.0.0.1:{s_port}", ops=(FETCH, REDEEM), key=s_key,
                                          contacts=s_contacts, slices=s_assignments, proc=serve,
                                          reset=lambda: reset_sqlite(sqlite_path, uuid.UUID(s_tenant).hex))  # fmt: skip

        def phase(label: str, op: str, seconds: int) -> dict[str, float]:
            """One phase from the reset database: a redeem phase on assignments of its own; wrk's figures and the
            server's CPU time per request."""
            side = sides[label]
            method, prefix, suffix, body = side["ops"][0 if op == "fetch" else 1]
            ids_file = side["contacts"] if op == "fetch" else side["slices"].take(seconds * args.redeem_rate)
            side["reset"]()
            spy = None
            if args.profile and seconds == args.duration and label == "serve, SQLite":
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(side["proc"].pid), "--duration", str(seconds), "--rate", "250",
                     "--format", "raw", "--nonblocking", "--output", str(Path(args.profile) / f"sqlite-{op}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            cpu = cpu_seconds(side["proc"].pid)
            r = wrk(
                side["base"], method, prefix, suffix, ids_file, side["key"], body, args.connections, seconds
            )
            r["cpu_us"] = (cpu_seconds(side["proc"].pid) - cpu) / max(1, r["requests"]) * 1e6
            if spy is not None:
                spy.wait()
            return r

        def show(what: str, op: str, r: dict[str, Any]) -> None:
            log(f"{what:<34} {op:<7} {r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:7.1f} ms  "
                f"CPU {r['cpu_us']:5.0f} µs/req  errors {r['errors']}  non-2xx {r['non2xx']}"
                + ("  INVALID: a redeem was refused" if invalid(op, r) else ""))  # fmt: skip

        for label in sides:  # warm-up (connections, caches, statement preparation), not counted
            for op in ("fetch", "redeem"):
                phase(label, op, WARMUP)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for k in range(args.rounds):
            for op in ("fetch", "redeem"):
                for label in sides:
                    r = phase(label, op, args.duration)
                    runs.setdefault((label, op), []).append(r)
                    show(f"round {k + 1} {label}", op, r)

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
                r = phase("serve, SQLite", op, args.duration)
                after = progress(s_url, importer, big_file.name)
                r["import"] = f"{before[0]} {before[1]:,} → {after[0]} {after[1]:,} of {after[2] or 0:,}"
                during[op] = r
                show("during import, serve, SQLite", op, r)
                log(f"  import {r['import']}")
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
    print(f"{args.connections} connections, {args.contacts:,} contacts fetched, redeem phases of {args.redeem_rate:,} "
          f"assignments per second each, {args.rounds} round(s) of {args.duration} s per phase, alternating")  # fmt: skip
    print("| | req/s | p50 ms | p99 ms (median round) | p99 worst | server CPU µs/req | vs floor req/s | "
          "p99 / floor p99 | errors / non-2xx |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row(what: str, op: str, r: dict[str, Any], worst: str) -> None:
        f = floor[op]
        ratio = f"{r['rps'] / f['rps']:.0%}" if f else "-"
        tail = f"{r['p99'] / f['p99']:.2f}×" if f else "-"
        flag = " INVALID" if invalid(op, r) else ""
        print(f"| {op}, {what} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {worst} | {r['cpu_us']:.0f} | "
              f"{ratio} | {tail} | {r['errors']} / {r['non2xx']}{flag} |")  # fmt: skip

    for (label, op), r in out.items():
        row(label, op, r, f"{r['p99_worst']:.1f}")
    for op, r in during.items():
        row(f"serve, SQLite, during the import ({r['import']})", op, r, "-")

    def verdict(ok: bool, *measured: dict[str, Any]) -> str:
        if any(invalid("redeem", r) for r in measured):
            return "INVALID (a redeem phase had refusals)"
        return "met" if ok else "MISSED"

    if floor["redeem"]:
        f = floor["redeem"]
        for label in ("api, PG, 1 process", "api, PG, 2 processes"):
            r = out[(label, "redeem")]
            ok = r["rps"] >= 0.9 * f["rps"] and r["p99"] <= 1.5 * f["p99"]
            print(f"target PG redeem ({label}) >= 90 % of the floor, p99 <= 1.5x: {verdict(ok, r, f)}")
        for op in ("fetch", "redeem"):
            if ("serve, SQLite", op) not in out:
                continue
            r, fo = out[("serve, SQLite", op)], floor[op] or f
            ok = r["rps"] >= 0.5 * fo["rps"] and r["p99"] < 100
            print(f"target SQLite {op} >= 50 % of the PG floor, p99 < 100 ms: {verdict(ok, r, f)}")


if __name__ == "__main__":
    main()
