"""The redemption file's applier alone: CPU per line of its Python and of its PostgreSQL backend, without the FTP
server, the worker process and its pipeline around it, so that two versions of the applier compare on a loaded
machine (issue 12's performance constraint).

On a fresh database, seeded as `transfer_bench` seeds it, it writes two redemption files, parses each and applies
it in batches, one transaction per batch, through `RedemptionApplier` as the importer does: the first file meets a
fresh database (no statistics yet), the second one the first's redemptions. Reported per file: the parse's CPU per
line, the applier's (this process's CPU around `apply`: the applier, SQLAlchemy, the driver; on SQLite the
database's work too) and the backend's (its process's CPU from /proc). The garbage collector is tuned as the
worker tunes it.

    python bench/redemption_apply_bench.py                          # 10,000 then 30,000 lines, batches of 1,000
    python bench/redemption_apply_bench.py --sqlite --batch 100     # SQLite, in the worker's batch size
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import text
from transfer_bench import seed, seed_sqlite, write_redemption_file

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.migrate import upgrade
from promoflow.server.runserver import tune_gc
from promoflow.server.tenant.service import TenantContext
from promoflow.server.tenant_setup import create_tenant
from promoflow.server.transfer.importers.redemptions import RedemptionApplier
from promoflow.wire.xml import Record, read_file

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int | None) -> float:
    """CPU seconds of a PostgreSQL backend so far (0 on SQLite: its work is this process's)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def apply_file(db: Database, ctx: TenantContext, path: Path, batch: int) -> str:
    t0 = time.process_time()
    records = [r for r in read_file("redemptions", path) if isinstance(r, Record)]
    parse = time.process_time() - t0
    apply = backend = 0.0
    applied = 0
    for start in range(0, len(records), batch):
        async with db.write() as conn:
            pid = None if db.sqlite else await conn.scalar(text("SELECT pg_backend_pid()"))
            b0, p0 = backend_cpu(pid), time.process_time()
            outcomes = await RedemptionApplier(ctx, None, datetime.now(UTC)).apply(
                conn, records[start : start + batch]
            )
            apply += time.process_time() - p0
            backend += backend_cpu(pid) - b0
        applied += sum(1 for o in outcomes if o.verdict.value == "applied")
    n = len(records)
    figures = f"{path.stem}: {n:,} lines, {applied:,} applied | CPU µs/line: parse {1e6 * parse / n:.1f}"
    figures += f", apply {1e6 * apply / n:.1f}"
    return figures if db.sqlite else figures + f", backend {1e6 * backend / n:.1f}"


async def run(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    upgrade(url)
    tenant = await create_tenant(Settings(database_url=url, data_dir=data_dir), datetime.now(UTC), "bench")
    tenant_id = uuid.UUID(tenant["tenantId"])
    counts = {"first": args.first, "second": args.second}
    seeded = (seed_sqlite if args.sqlite else seed)(url, tenant_id, counts, args.contacts)
    at = datetime.now(UTC) - timedelta(minutes=1)
    files = {name: data_dir / f"{name}.xml" for name in counts}
    for name, path in files.items():
        write_redemption_file(path, seeded["sets"][name], at)
    ctx = TenantContext(tenant_id, "bench", ZoneInfo("Europe/Stockholm"), "SEK", {})
    db = Database(url, pool_size=1)
    tune_gc()
    try:
        for path in files.values():
            print(await apply_file(db, ctx, path, args.batch), flush=True)
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--first", type=int, default=10_000, help="lines of the first file")
    parser.add_argument("--second", type=int, default=30_000, help="lines of the second file")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="lines per transaction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promoflow-apply-") as tmp:
        data_dir = Path(tmp)
        if args.sqlite:
            asyncio.run(run(args, f"sqlite:///{data_dir / 'promoflow.sqlite3'}", data_dir))
            return
        name = f"promoflow_apply_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            asyncio.run(run(args, args.pg_url.rsplit("/", 1)[0] + "/" + name, data_dir))
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
