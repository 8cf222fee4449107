"""The per-key rate limit holds across processes (issue 15 §4): two real `promoflow api` processes on one
PostgreSQL database, hammered at once through the same key, together admit no more than one bucket allows (plus
the documented tolerance of one lease per process) — and, as a control, twice as much when each process keeps
its own buckets (PROMOFLOW_RATE_LIMIT_SHARED=false), so the test can tell the two apart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.http.ratelimit import SharedRateLimiter
from promoflow.server.tenant.service import TenantService
from tests.conftest import make_tenant

from .test_metrics import Proc

RATE, BURST, SECONDS, THREADS = 20.0, 10, 3.0, 3

pytestmark = pytest.mark.postgres


@contextmanager
def two_apis(url: str, tmp_path: Path, env: dict[str, str]) -> Iterator[list[str]]:
    with ExitStack() as stack:
        bases = []
        for i in range(2):
            proc = Proc(["api", "--port", "0", "--database-url", url, "--data-dir", str(tmp_path / f"d{i}")], env,
                        r"listening on (http://\S+)")  # fmt: skip
            stack.callback(proc.stop)
            assert proc.match is not None
            bases.append(proc.match.group(1))
        yield bases


def hammer(bases: list[str], key: str) -> tuple[dict[str, dict[int, int]], float]:
    """THREADS clients per process, as fast as they can for SECONDS; statuses per process, and the window from
    the first request sent to the last answer received."""
    counts: dict[str, dict[int, int]] = {b: {} for b in bases}
    lock = threading.Lock()
    go = threading.Event()
    edges: list[float] = []

    def client(base: str) -> None:
        with httpx.Client(base_url=base, headers={"apikey": key}, timeout=30) as c:
            go.wait()
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:
                sent = time.monotonic()
                status = c.get("/api/v2/contacts/count").status_code
                with lock:
                    edges.extend((sent, time.monotonic()))
                    counts[base][status] = counts[base].get(status, 0) + 1

    threads = [threading.Thread(target=client, args=(b,)) for b in bases for _ in range(THREADS)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    return counts, max(edges) - min(edges)


def limited_tenant(url: str, tmp_path: Path) -> str:
    tenant = make_tenant(Settings(database_url=url, data_dir=tmp_path))

    async def configure() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(
                    conn, tenant["name"], {"rateLimitPerSecond": RATE, "rateLimitBurst": BURST}
                )
        finally:
            await db.dispose()

    asyncio.run(configure())
    return str(tenant["apiKey"])


def test_two_api_processes_together_admit_no_more_than_the_limit(pg_url: str, tmp_path: Path) -> None:
    key = limited_tenant(pg_url, tmp_path)
    with two_apis(pg_url, tmp_path, {}) as bases:
        counts, window = hammer(bases, key)
    admitted = sum(c.get(200, 0) for c in counts.values())
    lease = SharedRateLimiter(None).lease_size(RATE, BURST)  # type: ignore[arg-type]
    allowed = BURST + RATE * window + 2 * lease  # one bucket, plus one lease per process
    assert admitted <= allowed, (counts, window, allowed)
    assert admitted > BURST  # the bucket refills: this is a limit, not a wall
    for base, c in counts.items():  # both processes took from the same bucket and both refused
        assert c.get(200, 0) > 0 and c.get(429, 0) > 0, (base, counts)
        assert set(c) <= {200, 429}, counts


def test_control_each_process_alone_admits_about_twice_as_much(pg_url: str, tmp_path: Path) -> None:
    key = limited_tenant(pg_url, tmp_path)
    with two_apis(pg_url, tmp_path, {"PROMOFLOW_RATE_LIMIT_SHARED": "false"}) as bases:
        counts, window = hammer(bases, key)
    admitted = sum(c.get(200, 0) for c in counts.values())
    one_bucket = BURST + RATE * window + 2
    assert admitted > one_bucket * 1.5, (counts, window)  # what the shared limit prevents
