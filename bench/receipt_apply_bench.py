"""The transaction file's applier alone: CPU per receipt of its Python and of its PostgreSQL backend, without the
FTP server, the worker process and its pipeline around it (issue 12's performance constraint; the receipt
counterpart of `redemption_apply_bench.py`).

On a fresh database, seeded as `transfer_bench` seeds it (its contacts: every receipt matches one by email), it
writes a transactions file (`transfer_bench`'s receipts: 5 items each), parses it and applies it in batches, one
transaction per batch, through `TransactionApplier` as the importer does. Reported: the parse's CPU per receipt,
the applier's (this process's CPU around `apply`: the applier, SQLAlchemy, the driver; on SQLite the database's
work too) and the backend's (its process's CPU from /proc). Then the same file again: every receipt a duplicate.

    python bench/receipt_apply_bench.py                          # 3,000 receipts, batches of 1,000
    python bench/receipt_apply_bench.py --sqlite --batch 100     # SQLite, in the worker's batch size
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import on_fresh_database
from redemption_apply_bench import apply_each, figures, parser_of, timed_batches
from transfer_bench import seed, seed_sqlite, write_transactions_file

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.migrate import upgrade
from promoflow.server.tenant.service import TenantContext
from promoflow.server.tenant_setup import create_tenant
from promoflow.server.transfer.importers.transactions import TransactionApplier
from promoflow.wire.xml import Record, read_file


async def apply_file(db: Database, ctx: TenantContext, path: Path, batch: int, label: str) -> str:
    t0 = time.process_time()
    records = [r for r in read_file("transactions", path) if isinstance(r, Record)]
    parse = time.process_time() - t0
    outcomes, apply, backend = await timed_batches(
        db, records, batch, lambda: TransactionApplier(ctx, None, datetime.now(UTC))
    )
    verdicts: dict[str, int] = {}
    for o in outcomes:
        verdicts[o.verdict.value] = verdicts.get(o.verdict.value, 0) + 1
    n = len(records)
    return figures(f"{label}: {n:,} receipts {verdicts}", n, "receipt", parse, apply, backend, db.sqlite)


async def run(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    upgrade(url)
    tenant = await create_tenant(Settings(database_url=url, data_dir=data_dir), datetime.now(UTC), "bench")
    tenant_id = uuid.UUID(tenant["tenantId"])
    (seed_sqlite if args.sqlite else seed)(url, tenant_id, {"none": 0}, args.contacts)
    path = data_dir / "transactions.xml"
    write_transactions_file(path, args.receipts, args.contacts, datetime.now(UTC) - timedelta(minutes=1))
    await apply_each(url, tenant_id, [(lambda db, ctx, label=label: apply_file(db, ctx, path, args.batch, label))
                                      for label in ("first", "again")])  # fmt: skip


def main() -> None:
    parser = parser_of(__doc__, "receipts")
    parser.add_argument("--receipts", type=int, default=3000)
    args = parser.parse_args()
    on_fresh_database(
        args.pg_url, args.sqlite, "promoflow_rapply", lambda url, data_dir: run(args, url, data_dir)
    )


if __name__ == "__main__":
    main()
