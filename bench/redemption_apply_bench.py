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
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _common import on_fresh_database
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


async def timed_batches(
    db: Database, records: list[Any], batch: int, applier: Callable[[], Any]
) -> tuple[list[Any], float, float]:
    """Apply ``records`` in batches of ``batch``, one transaction each, through a fresh ``applier()`` per batch as
    the importer does: (the outcomes, the CPU seconds of this process inside `apply`, the backend's)."""
    apply = backend = 0.0
    outcomes: list[Any] = []
    for start in range(0, len(records), batch):
        async with db.write() as conn:
            pid = None if db.sqlite else await conn.scalar(text("SELECT pg_backend_pid()"))
            b0, p0 = backend_cpu(pid), time.process_time()
            outcomes += await applier().apply(conn, records[start : start + batch])
            apply += time.process_time() - p0
            backend += backend_cpu(pid) - b0
    return outcomes, apply, backend


async def apply_file(db: Database, ctx: TenantContext, path: Path, batch: int) -> str:
    t0 = time.process_time()
    records = [r for r in read_file("redemptions", path) if isinstance(r, Record)]
    parse = time.process_time() - t0
    outcomes, apply, backend = await timed_batches(
        db, records, batch, lambda: RedemptionApplier(ctx, None, datetime.now(UTC))
    )
    applied = sum(1 for o in outcomes if o.verdict.value == "applied")
    n = len(records)
    return figures(
        f"{path.stem}: {n:,} lines, {applied:,} applied", n, "line", parse, apply, backend, db.sqlite
    )


def figures(head: str, n: int, unit: str, parse: float, apply: float, backend: float, sqlite: bool) -> str:
    """One file's CPU per record: the parse's, the applier's and (PostgreSQL) its backend's."""
    out = f"{head} | CPU µs/{unit}: parse {1e6 * parse / n:.1f}, apply {1e6 * apply / n:.1f}"
    return out if sqlite else out + f", backend {1e6 * backend / n:.1f}"


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
    await apply_each(
        url, tenant_id, [(lambda db, ctx, p=p: apply_file(db, ctx, p, args.batch)) for p in files.values()]
    )


async def apply_each(
    url: str, tenant_id: uuid.UUID, runs: list[Callable[[Database, TenantContext], Any]]
) -> None:
    """Each run (an applier over one file) on one connection of the tenant, printing its figures."""
    ctx = TenantContext(tenant_id, "bench", ZoneInfo("Europe/Stockholm"), "SEK", {})
    db = Database(url, pool_size=1)
    tune_gc()
    try:
        for one in runs:
            print(await one(db, ctx), flush=True)
    finally:
        await db.dispose()


def parser_of(doc: str | None, unit: str) -> argparse.ArgumentParser:
    """The options both applier benches take (``unit``: what one transaction's batch counts)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help=f"{unit} per transaction")
    return parser


def main() -> None:
    parser = parser_of(__doc__, "lines")
    parser.add_argument("--first", type=int, default=10_000, help="lines of the first file")
    parser.add_argument("--second", type=int, default=30_000, help="lines of the second file")
    args = parser.parse_args()
    on_fresh_database(
        args.pg_url, args.sqlite, "promoflow_apply", lambda url, data_dir: run(args, url, data_dir)
    )


if __name__ == "__main__":
    main()
