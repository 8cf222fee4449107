"""The API-key edge with named keys and "last used at": what `authorize` costs per request for a cached key, with
the last-used recorder (`KeyUsage.note`) and without it (the edge as before named keys), in the same run; and how
many database writes the recorder made for all those requests.

    python bench/apikey_edge_bench.py [--requests 200000] [--keys 20]

Baseline: the edge without the recorder (same process, same cache). The claim to check: no extra query per
request (the cache answers every request after the first per key), and at most one write per key per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import log

from promoflow.kit.clock import SystemClock
from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.http.edge import AppState, authorize
from promoflow.server.migrate import upgrade
from promoflow.server.tenant.keys import ApiKeyService, KeyUsage
from promoflow.server.tenant.service import TenantService
from promoflow.server.tenant_setup import create_tenant


async def run(requests: int, n_keys: int, url: str, data: Path) -> None:
    settings = Settings(database_url=url, data_dir=data, default_rate_limit_per_second=0)
    info = await create_tenant(settings, datetime.now(UTC), "bench")
    db = Database(url, pool_size=2)
    keys = [info["apiKey"]]
    async with db.write() as conn:
        tid = (await TenantService(datetime.now(UTC)).by_name(conn, "bench")).id
        for i in range(n_keys - 1):
            keys.append((await ApiKeyService(datetime.now(UTC)).create(conn, tid, f"till {i}")).secret)
    headers = [{"apikey": k} for k in keys]

    async def measure(with_usage: bool) -> tuple[float, int]:
        st = AppState(settings=settings, db=db, clock=SystemClock())
        usage = KeyUsage(db, SystemClock()) if with_usage else None
        st.key_usage = usage
        for h in headers:  # warm the cache: one look-up per key
            await authorize(st, h, "127.0.0.1")
        start = time.perf_counter()
        for i in range(requests):
            await authorize(st, headers[i % len(headers)], "127.0.0.1")
        elapsed = time.perf_counter() - start
        written = await usage.flush() if usage is not None else 0
        return elapsed / requests * 1e6, written

    rows: dict[str, list[float]] = {"without recorder (baseline)": [], "with KeyUsage.note": []}
    writes = 0
    for _ in range(3):
        base, _ = await measure(False)
        rec, w = await measure(True)
        rows["without recorder (baseline)"].append(base)
        rows["with KeyUsage.note"].append(rec)
        writes += w
    await db.dispose()
    log(f"{requests:,} authorisations per run, {n_keys} keys, cached; best of 3 runs (µs per request)")
    for name, values in rows.items():
        log(f"  {name:<30} best {min(values):6.2f}  median {statistics.median(values):6.2f}")
    extra = min(rows["with KeyUsage.note"]) - min(rows["without recorder (baseline)"])
    log(f"  recorder's cost per request: {extra:+.2f} µs; database writes for {3 * requests:,} requests: {writes} "
        f"(one per key per run: each run is a fresh process-like state)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        upgrade(url)
        asyncio.run(run(args.requests, args.keys, url, Path(tmp)))


if __name__ == "__main__":
    main()
