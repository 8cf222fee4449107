"""SDK benchmark (issue 4): the outbox's durable writes, the SDK's overhead per call, and a 10,000-redemption sync.

1. **Outbox write + fsync latency** (p50/p99/max): ``Outbox.add_redemption`` (XML, validation, sidecar, file and
   folder fsyncs), a transition (``mark_done``) and a sale's commit marker; then the outbox's **share of a
   checkout's time**: checkouts against a real `promoflow serve` (identify, fetch, apply, two redeems, receipt),
   with the time spent in outbox calls measured inside them.
2. **SDK overhead per call** against a bare httpx call to the same endpoint (``GET …/contacts/{id}/promotions``):
   interleaved calls to the real server (p50 of each), and the same on an in-memory transport with the same
   answer (the SDK's own cost: building the request, retry bookkeeping, parsing into models).
3. **Sync of N queued redemptions end to end** (default 10,000): write them to an outbox as queued intents, then
   ``SyncAgent`` uploads them over FTP to the server, the server's worker imports them, and the agent reads every
   result back and settles every intent; the time of each stage, checked in the database.

    python bench/sdk_bench.py                        # everything, full size
    python bench/sdk_bench.py --redemptions 2000     # a smaller sync
Runs on SQLite in a temporary directory (the file system of --workdir, default the system's temp dir).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from promoflow.client import (  # noqa: E402
    Basket,
    BasketLine,
    CheckoutFlow,
    ContactCache,
    EngageClient,
    IntentState,
    Outbox,
    RetryPolicy,
    SyncAgent,
)
from promoflow.wire.xml import Redemption  # noqa: E402


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(values, 50) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
        "mean_ms": round(statistics.mean(values) * 1000, 3),
    }


# ------------------------------------------------------------------------------------------ the server


class Server:
    """`promoflow serve` on a fresh SQLite database, with a tenant (API key and FTP account)."""

    def __init__(self, workdir: Path) -> None:
        from promoflow.server.config import Settings
        from promoflow.server.migrate import upgrade
        from promoflow.server.tenant_setup import create_tenant

        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True)
        self.db_url = f"sqlite:///{workdir / 'promoflow.sqlite3'}"
        upgrade(self.db_url)
        settings = Settings(database_url=self.db_url, data_dir=self.data_dir)
        self.tenant = asyncio.run(create_tenant(settings, datetime.now(UTC), f"bench-{uuid.uuid4().hex[:8]}"))
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.ftp_base = ""
        self.output: list[str] = []

    def start(self, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": "0",
               "PROMOFLOW_LOG_LEVEL": "warning"}  # fmt: skip
        cmd = [sys.executable, "-m", "promoflow.cli", "serve", "--port", "0", "--ftp-port", "0",
               "--database-url", self.db_url, "--data-dir", str(self.data_dir), *extra]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        ready = threading.Event()

        def drain() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if m := re.search(r"promoflow ftp listening on (ftp://\S+)", line):
                    self.ftp_base = m.group(1)
                if m := re.search(r"promoflow api listening on (http://\S+)", line):
                    self.base_url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60) or not self.base_url:
            raise RuntimeError("the server did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def worker(self) -> subprocess.Popen[bytes]:
        """A `promoflow worker` process on this server's database (for a server started with --no-worker)."""
        cmd = [sys.executable, "-m", "promoflow.cli", "worker", "--database-url", self.db_url,
               "--data-dir", str(self.data_dir)]  # fmt: skip
        env = {**os.environ, "PROMOFLOW_LOG_LEVEL": "warning"}
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    @property
    def api_key(self) -> str:
        return str(self.tenant["apiKey"])

    @property
    def ftp_url(self) -> str:
        scheme, rest = self.ftp_base.split("://", 1)
        return f"{scheme}://{self.tenant['ftpUser']}:{self.tenant['ftpPassword']}@{rest}"

    def seed(self, contacts: int, promotions: int = 2) -> list[tuple[str, str, list[str]]]:
        """``contacts`` contacts, each with one assignment of each of ``promotions`` POS promotions, straight
        into the database: (email, contact id, assignment ids)."""
        from promoflow.server.db import make_sync_engine
        from promoflow.server.models import assignment, contact, promotion

        tid = uuid.UUID(self.tenant["tenantId"])
        now = datetime.now(UTC)
        with httpx.Client(base_url=self.base_url, headers={"apikey": self.api_key}, timeout=30) as http:
            promotion_ids = []
            for i in range(promotions):
                value_type, value = ("PERCENT", "10") if i % 2 == 0 else ("MONEY", "20")
                body = {
                    "name": f"bench {i}",
                    "validity": {"startDate": "2020-01-01", "endDate": "2099-12-31"},
                    "redemptionChannels": [{"type": "POS", "valueType": value_type, "value": value}],
                }
                created = http.post("/api/v2/promotions/multichannels", json=body).json()
                http.post(f"/api/v2/promotions/multichannels/{created['id']}/activate").raise_for_status()
                promotion_ids.append(uuid.UUID(created["id"]))
        assert promotion is not None
        made: list[tuple[str, str, list[str]]] = []
        rows_c: list[dict[str, Any]] = []
        rows_a: list[dict[str, Any]] = []
        for g in range(contacts):
            cid = uuid.uuid4()
            email = f"c{g}-{uuid.uuid4().hex[:6]}@bench.example"
            rows_c.append({"id": cid, "tenant_id": tid, "contact_type": "Member", "attributes": {"email": email},
                           "preferences": {}, "key_value": email, "email": email, "approved": True,
                           "created_at": now, "updated_at": now})  # fmt: skip
            ids = []
            for pid in promotion_ids:
                aid = uuid.uuid4()
                ids.append(str(aid))
                rows_a.append({"id": aid, "tenant_id": tid, "promotion_id": pid, "contact_id": cid,
                               "valid_from": now - timedelta(days=1), "valid_to": now + timedelta(days=365),
                               "source": "bench", "created_at": now, "redemption_count": 0,
                               "reactivation_count": 0})  # fmt: skip
            made.append((email, str(cid), ids))
        engine = make_sync_engine(self.db_url)
        with engine.begin() as conn:
            for start in range(0, len(rows_c), 5000):
                conn.execute(contact.insert(), rows_c[start : start + 5000])
            for start in range(0, len(rows_a), 5000):
                conn.execute(assignment.insert(), rows_a[start : start + 5000])
        engine.dispose()
        return made

    def redemptions(self) -> int:
        from sqlalchemy import func, select

        from promoflow.server.db import make_sync_engine
        from promoflow.server.models import redemption

        engine = make_sync_engine(self.db_url)
        with engine.connect() as conn:
            n = conn.scalar(
                select(func.count())
                .select_from(redemption)
                .where(redemption.c.tenant_id == uuid.UUID(self.tenant["tenantId"]))
            )
        engine.dispose()
        return int(n or 0)


# --------------------------------------------------------------------------------------------- stage 1


def bench_outbox_writes(workdir: Path, n: int) -> dict[str, Any]:
    log(f"outbox: {n} durable redemption writes, transitions and commits in {workdir}")
    now = datetime.now(UTC)
    writes: list[float] = []
    moves: list[float] = []
    commits: list[float] = []
    floor: list[float] = []
    floor_dir = workdir / "floor"
    floor_dir.mkdir()
    with Outbox(workdir / "outbox-writes") as outbox:
        for i in range(n):
            # The disk's floor, interleaved so both see the same conditions: one small file written, fsync'd,
            # renamed into place and its folder fsync'd (what any crash-safe write costs at least).
            t0 = time.perf_counter()
            tmp, final = floor_dir / f".{i}.tmp", floor_dir / f"{i}.xml"
            with open(tmp, "wb") as f:
                f.write(b"x" * 600)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            fd = os.open(floor_dir, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
            floor.append(time.perf_counter() - t0)
            record = Redemption(coupon_id=str(uuid.uuid4()), contact_id=str(uuid.uuid4()), redemption_channel="POS",
                                redeemed_on=now, store_external_id="S-1", unique_receipt_id=f"R-{i}")  # fmt: skip
            t0 = time.perf_counter()
            intent = outbox.add_redemption(record, group=f"g{i}")
            t1 = time.perf_counter()
            outbox.commit(f"g{i}", [intent])
            t2 = time.perf_counter()
            outbox.mark_done(intent)
            t3 = time.perf_counter()
            outbox.release(intent)
            outbox.forget_group(f"g{i}")
            writes.append(t1 - t0)
            commits.append(t2 - t1)
            moves.append(t3 - t2)
    result = {"write": summary(writes), "commit": summary(commits), "transition": summary(moves),
              "floor_one_fsynced_file": summary(floor)}  # fmt: skip
    log(f"  write p50 {ms(pct(writes, 50))} p99 {ms(pct(writes, 99))}; transition p50 {ms(pct(moves, 50))} "
        f"p99 {ms(pct(moves, 99))}; commit p50 {ms(pct(commits, 50))} p99 {ms(pct(commits, 99))}; "
        f"floor (one fsync'd file) p50 {ms(pct(floor, 50))} p99 {ms(pct(floor, 99))}")  # fmt: skip
    return result


class Timed:
    """Wraps an outbox's methods and adds up the time spent in them."""

    METHODS = ("add_redemption", "add_receipt", "add_contact", "commit", "transition", "load", "forget_group",
               "release", "read_bytes")  # fmt: skip

    def __init__(self, outbox: Outbox) -> None:
        self.spent = 0.0
        self.depth = 0
        for name in self.METHODS:
            setattr(outbox, name, self._wrap(getattr(outbox, name)))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:  # transition() inside mark_done() is counted once
                    self.spent += time.perf_counter() - start

        return timed


def bench_checkout_share(server: Server, workdir: Path, n: int) -> dict[str, Any]:
    log(f"checkouts: {n} against the real server (identify, fetch, apply, 2 redeems, receipt)")
    customers = server.seed(n)
    totals: list[float] = []
    in_outbox: list[float] = []
    basket = Basket((BasketLine("SKU-1", Decimal(2), Decimal("149.00")), BasketLine("BAG", 1, 5)), "SEK")
    with (
        EngageClient(server.base_url, server.api_key, retry=RetryPolicy.interactive()) as client,
        Outbox(workdir / "outbox-checkouts") as outbox,
        ContactCache(workdir / "contacts.sqlite3") as cache,
    ):
        timed = Timed(outbox)
        flow = CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache)
        for email, _cid, _ids in customers:
            before = timed.spent
            start = time.perf_counter()
            sale = flow.start()
            sale.identify(email=email)
            sale.fetch_promotions()
            sale.apply(basket)
            done = sale.complete()
            totals.append(time.perf_counter() - start)
            in_outbox.append(timed.spent - before)
            assert done.online, done
    share = sum(in_outbox) / sum(totals)
    log(f"  checkout p50 {ms(pct(totals, 50))} p99 {ms(pct(totals, 99))}; outbox per checkout p50 "
        f"{ms(pct(in_outbox, 50))} = {share:.1%} of the checkout time")  # fmt: skip
    return {
        "checkout": summary(totals),
        "outbox_per_checkout": summary(in_outbox),
        "outbox_share": round(share, 4),
    }


# --------------------------------------------------------------------------------------------- stage 2


def bench_overhead(server: Server, n: int) -> dict[str, Any]:
    log(f"SDK overhead: {n} interleaved calls each, SDK vs bare httpx, GET …/contacts/{{id}}/promotions")
    (email, cid, _ids), *_ = server.seed(1)
    path = f"/api/v2/contacts/{cid}/promotions"
    params = {"redemptionChannelType": "POS"}
    headers = {"apikey": server.api_key, "Accept": "application/json", "Content-Type": "application/json",
               "User-Agent": "bench"}  # fmt: skip
    sdk_times: list[float] = []
    bare_times: list[float] = []
    with (
        EngageClient(server.base_url, server.api_key, retry=RetryPolicy.interactive()) as client,
        httpx.Client(base_url=server.base_url, headers=headers) as bare,
    ):
        for _ in range(50):  # warm both connections and caches
            client.list_promotions(cid, "POS")
            bare.get(path, params=params).json()
        for i in range(n):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for which in order:
                start = time.perf_counter()
                if which == 0:
                    promotions = client.list_promotions(cid, "POS")
                    sdk_times.append(time.perf_counter() - start)
                else:
                    answer = bare.get(path, params=params)
                    answer.raise_for_status()
                    items = answer.json()
                    bare_times.append(time.perf_counter() - start)
        assert len(promotions) == len(items) == 2
        body = bare.get(path, params=params).content

    def canned(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    mock_sdk: list[float] = []
    mock_bare: list[float] = []
    with (
        EngageClient("http://bench.invalid", server.api_key, transport=httpx.MockTransport(canned)) as client,
        httpx.Client(
            base_url="http://bench.invalid", headers=headers, transport=httpx.MockTransport(canned)
        ) as bare,
    ):
        for i in range(n + 50):
            start = time.perf_counter()
            client.list_promotions(cid, "POS")
            middle = time.perf_counter()
            bare.get(path, params=params).json()
            end = time.perf_counter()
            if i >= 50:
                mock_sdk.append(middle - start)
                mock_bare.append(end - middle)
    real_added = pct(sdk_times, 50) - pct(bare_times, 50)
    own_added = pct(mock_sdk, 50) - pct(mock_bare, 50)
    log(f"  real server: SDK p50 {ms(pct(sdk_times, 50))}, bare p50 {ms(pct(bare_times, 50))} → added "
        f"{ms(real_added)}; in memory: SDK {ms(pct(mock_sdk, 50))}, bare {ms(pct(mock_bare, 50))} → added "
        f"{ms(own_added)}")  # fmt: skip
    return {
        "real": {
            "sdk": summary(sdk_times),
            "bare": summary(bare_times),
            "added_p50_ms": round(real_added * 1000, 3),
        },
        "in_memory": {
            "sdk": summary(mock_sdk),
            "bare": summary(mock_bare),
            "added_p50_ms": round(own_added * 1000, 3),
        },
        "customer": email,
    }


# --------------------------------------------------------------------------------------------- stage 3


def _queue(server: Server, outbox: Outbox, n: int) -> float:
    customers = server.seed(n, promotions=1)
    now = datetime.now(UTC)
    start = time.perf_counter()
    for email, cid, (aid,) in customers:
        record = Redemption(coupon_id=aid, contact_id=cid, redemption_channel="POS", redeemed_on=now,
                            store_external_id="S-1", unique_receipt_id=f"R-{email}")  # fmt: skip
        intent = outbox.add_redemption(record)
        outbox.mark_queued(intent, "offline")
        outbox.release(intent)
    return time.perf_counter() - start


def _wait_for_results(server: Server, outbox: Outbox, since: float) -> float:
    """Seconds from ``since`` until every uploaded intent's result file is on the server (bounded polling:
    the server's worker imports asynchronously)."""
    from promoflow.client._ftp import FtpConnection, FtpTarget
    from promoflow.wire.xml import IMPORT_RESULTS_DIR, result_files_for

    target = FtpTarget.from_url(server.ftp_url)
    expected = {str(i.detail["remoteName"]) for i in outbox.intents(IntentState.UPLOADED)}
    pause = 0.05
    while True:
        with FtpConnection(target) as ftp:
            listed = list(ftp.listing(IMPORT_RESULTS_DIR))
            missing = {name for name in expected if not result_files_for(name, listed)}
        if not missing or time.perf_counter() - since > 3600:
            return time.perf_counter() - since
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


def bench_sync_staged(workdir: Path, n: int, batch_size: int) -> dict[str, Any]:
    """Each stage alone: upload (no worker running), import (a worker started afterwards), results read."""
    log(f"sync, staged: {n} queued redemptions → FTP (batches of {batch_size}) → import → results read back")
    server = Server(workdir / "server-staged")
    server.start("--no-worker")
    worker = None
    try:
        outbox = Outbox(workdir / "outbox-staged", sender="till1")
        queue_s = _queue(server, outbox, n)
        log(f"  queued {n} intents in {queue_s:.1f}s ({n / queue_s:.0f}/s)")
        agent = SyncAgent(outbox, None, server.ftp_url, batch_size=batch_size)
        start = time.perf_counter()
        first = agent.run_once()
        upload_s = first.timings.get("upload", 0.0)
        assert first.uploaded == n, first.to_json()
        files = -(-n // batch_size)
        log(f"  upload: {n} intents in {files} files in {upload_s:.2f}s ({n / upload_s:.0f}/s)")
        started = time.perf_counter()
        worker = server.worker()
        import_s = _wait_for_results(server, outbox, started)
        log(f"  import: {n} redemptions imported, results written, in {import_s:.2f}s ({n / import_s:.0f}/s)")
        report = agent.run_once()
        results_s = report.timings.get("results", 0.0)
        end_to_end = time.perf_counter() - start
        status = outbox.status()
        outbox.close()
        applied = server.redemptions()
        log(f"  results: {report.results_read} files read, {report.done} intents settled in {results_s:.2f}s; "
            f"upload → settled {end_to_end:.1f}s; redemptions in the database {applied}")  # fmt: skip
        assert status.counts[IntentState.DONE] == n and applied == n, (status.to_json(), applied)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        server.stop()
    return {
        "redemptions": n, "batch_size": batch_size, "files": files, "queue_s": round(queue_s, 2),
        "upload_s": round(upload_s, 2), "import_s": round(import_s, 2), "results_s": round(results_s, 2),
        "upload_to_settled_s": round(end_to_end, 2), "applied_in_db": applied,
    }  # fmt: skip


def bench_sync_live(server: Server, workdir: Path, n: int, batch_size: int) -> dict[str, Any]:
    """The way it runs: `promoflow serve` imports each file while the next ones are uploaded."""
    log(f"sync, live: {n} queued redemptions to `promoflow serve` (its worker importing as files arrive)")
    outbox = Outbox(workdir / "outbox-live", sender="till2")
    before = server.redemptions()
    queue_s = _queue(server, outbox, n)
    agent = SyncAgent(outbox, None, server.ftp_url, batch_size=batch_size)
    start = time.perf_counter()
    report = agent.sync_until_settled(3600, first_poll=0.05, max_poll=0.5)
    end_to_end = time.perf_counter() - start
    applied = server.redemptions() - before
    status = outbox.status()
    outbox.close()
    log(f"  upload, import and results: {end_to_end:.1f}s end to end ({n / end_to_end:.0f}/s; upload stage "
        f"{report.timings.get('upload', 0):.1f}s, results stage {report.timings.get('results', 0):.1f}s); "
        f"redemptions in the database {applied}")  # fmt: skip
    assert status.counts[IntentState.DONE] == n and applied == n, (status.to_json(), applied)
    return {
        "redemptions": n, "queue_s": round(queue_s, 2), "end_to_end_s": round(end_to_end, 2),
        "upload_stage_s": round(report.timings.get("upload", 0.0), 2),
        "results_stage_s": round(report.timings.get("results", 0.0), 2), "applied_in_db": applied,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ main


@contextlib.contextmanager
def workspace(base: str | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="promoflow-sdk-bench-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=2000, help="outbox writes measured")
    parser.add_argument("--checkouts", type=int, default=300, help="checkouts for the outbox's share")
    parser.add_argument("--calls", type=int, default=2000, help="calls per side for the SDK overhead")
    parser.add_argument("--redemptions", type=int, default=10_000, help="queued redemptions synced")
    parser.add_argument("--batch-size", type=int, default=500, help="intents per uploaded file (1: one each)")
    parser.add_argument("--workdir", default=None, help="where the temporary files go")
    parser.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with workspace(args.workdir) as workdir:
        results["outbox"] = bench_outbox_writes(workdir, args.writes)
        server = Server(workdir / "server")
        server.start()
        try:
            results["checkout"] = bench_checkout_share(server, workdir, args.checkouts)
            results["overhead"] = bench_overhead(server, args.calls)
            results["sync_live"] = bench_sync_live(server, workdir, args.redemptions, args.batch_size)
        finally:
            server.stop()
        results["sync_staged"] = bench_sync_staged(workdir, args.redemptions, args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
