"""Small-file latency while a big file imports (issue 11 §11): one tenant's big file must not hold up the others.

Tenant A uploads a redemption file of --lines lines (default 100,000); 16 ms after its ``226`` tenant B uploads a
one-line redemption file; B's latency is the time from the start of B's upload to B's result file in B's
``importResults`` (what an integrator polling for it sees). Then B sends --samples more one-line files, one after
the other's result, while A's import still runs. One `promoflow ftp` and one `promoflow worker` process with the
default settings (one worker, one turn, polling every 0.5 s, batches of 1,000): the embedded case.

The floor, in the same run: the same one-line file of B's with the worker idle (no big file), which is the poll
interval plus the import of one line. Target: B's latency under load below 2 s on SQLite and PostgreSQL.

    python bench/latency_bench.py --sqlite
    python bench/latency_bench.py                       # PostgreSQL at PROMOFLOW_BENCH_PG_URL
    python bench/latency_bench.py --lines 1000000 --samples 10
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_bench import (
    Proc,
    log,
    result_of,
    seed,
    seed_sqlite,
    write_redemption_file,
)

from promoflow.server.config import Settings
from promoflow.server.db import make_sync_engine
from promoflow.server.migrate import upgrade
from promoflow.server.models import file_import, job
from promoflow.server.tenant_setup import create_tenant
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR

TARGET_S = 2.0
POLL_S = 0.005  # how often the bench looks for a result file


def upload(port: int, tenant: dict[str, Any], path: Path) -> str:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=600)
    try:
        ftp.login(tenant["ftpUser"], tenant["ftpPassword"])
        with open(path, "rb") as f:
            return ftp.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/{path.name}", f, blocksize=1 << 20)
    finally:
        ftp.quit()


def wait_for_file(path: Path, worker: Proc, timeout: float) -> float:
    """Bounded poll for a result file; the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if worker.proc.poll() is not None:
            raise RuntimeError("worker died:\n" + "".join(worker.lines[-30:]))
        if time.monotonic() > deadline:
            raise TimeoutError(path.name)
        time.sleep(POLL_S)
    return time.monotonic()


def small_file(
    url: str, data_dir: Path, port: int, tenant: dict[str, Any], path: Path, worker: Proc
) -> float:
    """Seconds from the start of the upload of a one-line file to its result file."""
    t0 = time.monotonic()
    reply = upload(port, tenant, path)
    assert reply.startswith("226"), reply
    return wait_for_file(result_of(data_dir, tenant, path.name, reply), worker, 120) - t0


def progress(url: str, tenant: dict[str, Any], name: str) -> tuple[str, int, int | None]:
    """The big import's status and its job's committed records, read from the database."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(file_import.c.status, job.c.progress_done, job.c.progress_total)
                .join(job, job.c.id == file_import.c.job_id)
                .where(
                    file_import.c.tenant_id == uuid.UUID(tenant["tenantId"]), file_import.c.file_name == name
                )
            ).one()
    finally:
        engine.dispose()
    return row.status, row.progress_done or 0, row.progress_total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PROMOFLOW_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--sqlite", action="store_true", help="the embedded default: a SQLite file")
    parser.add_argument("--lines", type=int, default=100_000, help="lines of tenant A's big file")
    parser.add_argument("--samples", type=int, default=5, help="B's one-line files sent after the first")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="promoflow-latency-"))
    db_name = f"promoflow_latency_{uuid.uuid4().hex[:8]}"
    if args.sqlite:
        url = f"sqlite:///{data_dir / 'promoflow.sqlite3'}"
    else:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        url = args.pg_url.rsplit("/", 1)[0] + "/" + db_name
    ftp = worker = None
    try:
        upgrade(url)
        settings = Settings(database_url=url, data_dir=data_dir)
        now = datetime.now(UTC)
        a = asyncio.run(create_tenant(settings, now, "tenant-a"))
        b = asyncio.run(create_tenant(settings, now, "tenant-b"))
        seeding = seed_sqlite if args.sqlite else seed
        log(f"seeding {args.lines:,} assignments of tenant A, {args.samples + 2} of tenant B")
        big_ids = seeding(url, uuid.UUID(a["tenantId"]), {"big": args.lines}, 1000)["sets"]["big"]
        small_ids = seeding(url, uuid.UUID(b["tenantId"]), {"small": args.samples + 2}, 10)["sets"]["small"]
        at = datetime.now(UTC) - timedelta(minutes=1)
        files = data_dir / "files"
        files.mkdir()
        big = files / "20260101000000_A_redemptions.xml"
        write_redemption_file(big, big_ids, at)
        smalls = []
        for i, coupon in enumerate(small_ids):
            path = files / f"2026010100{i:04d}_B_redemptions.xml"
            write_redemption_file(path, [coupon], at)
            smalls.append(path)
        env = {"PROMOFLOW_DATABASE_URL": url, "PROMOFLOW_DATA_DIR": str(data_dir), "PROMOFLOW_LOG_LEVEL": "warning",
               "PROMOFLOW_EXPORT_INTERVAL_SECONDS": "0"}  # fmt: skip
        ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
        port = int(ftp.match.group(1))  # type: ignore[union-attr]
        worker = Proc(["worker"], env, r"promoflow worker \S+ running")

        log("floor: B's one-line file, the worker idle")
        floor = small_file(url, data_dir, port, b, smalls[0], worker)
        log(f"  {floor:.3f} s")

        log(f"A uploads {big.name} ({big.stat().st_size / 1e6:.0f} MB, {args.lines:,} lines)")
        t0 = time.monotonic()
        reply = upload(port, a, big)
        assert reply.startswith("226"), reply
        a_result = result_of(data_dir, a, big.name, reply)
        a_uploaded = time.monotonic() - t0
        time.sleep(0.016)  # B's upload starts 16 ms after A's file was queued
        samples: list[tuple[float, str, int, int | None]] = []
        for path in smalls[1:]:
            took = small_file(url, data_dir, port, b, path, worker)
            status, done, total = progress(url, a, big.name)
            samples.append((took, status, done, total))
            log(f"  B {path.name}: {took:.3f} s; A {status}, {done:,} of {total or 0:,} records committed")
            # queued: A's job is reading its file before its first batch
            if status not in ("queued", "running"):
                break
        wait_for_file(a_result, worker, 7200)
        a_total = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while (status := progress(url, a, big.name)[0]) == "running" and time.monotonic() < deadline:
            time.sleep(POLL_S)  # the result file is published just before the import's row is marked done
        under_load = [s[0] for s in samples if s[1] in ("queued", "running")]
    finally:
        for proc in (worker, ftp):
            if proc is not None:
                proc.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if not args.sqlite:
                with psycopg.connect(args.pg_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    db = "SQLite" if args.sqlite else "PostgreSQL"
    print()
    print(f"{db}: tenant A's {args.lines:,}-line file uploaded in {a_uploaded:.1f} s, imported ({status}) "
          f"{a_total - a_uploaded:.1f} s after ({args.lines / (a_total - a_uploaded):,.0f} lines/s incl. the small files)")  # fmt: skip
    print("| B's one-line file | latency s (upload start → result file) |")
    print("|---|---:|")
    print(f"| floor: worker idle | {floor:.3f} |")
    for i, (took, st, done, total) in enumerate(samples, 1):
        where = f"A {st}, {done:,}/{total or 0:,}" if st in ("queued", "running") else f"A {st}"
        print(f"| {i} during A's import ({where}) | {took:.3f} |")
    if under_load:
        worst = max(under_load)
        verdict = "met" if worst < TARGET_S else "MISSED"
        print(f"B while A imports: median {statistics.median(under_load):.3f} s, worst {worst:.3f} s "
              f"({len(under_load)} files); target < {TARGET_S:.0f} s {verdict}; floor {floor:.3f} s")  # fmt: skip
    else:
        print("A's import ended before B's first file was measured: use --lines larger")


if __name__ == "__main__":
    main()
