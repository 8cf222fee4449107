"""/metrics read after real traffic (issue 15 §4): real server processes on both databases, real HTTP, a real FTP
upload imported by the real worker; `api --workers 2` merging its processes' files and marking a killed one's;
`promoflow worker`'s own metrics port; the optional bearer token. Waiting is a bounded poll, never a sleep."""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.tenant.service import TenantService
from promoflow.server.worker import queue
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, Redemption, write_redemptions
from tests.conftest import make_tenant
from tests.server.receipt.conftest import receipt_body
from tests.support.children import tied
from tests.support.servers import start_server

from ._support import channel, promotion_body

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
QUIET = {"PROMOFLOW_EXPORT_INTERVAL_SECONDS": "0", "PROMOFLOW_LOG_LEVEL": "warning", "PROMOFLOW_METRICS_DB_CACHE_SECONDS": "0"}  # fmt: skip

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def configure(url: str, name: str, changes: dict[str, Any]) -> None:
    async def run() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(conn, name, changes)
        finally:
            await db.dispose()

    asyncio.run(run())


def upload(ftp_url: str, tenant: dict[str, Any], name: str, data: bytes) -> str:
    host, port = ftp_url.split("//", 1)[1].rsplit(":", 1)
    client = ftplib.FTP()
    client.connect(host, int(port), timeout=60)
    try:
        client.login(tenant["ftpUser"], tenant["ftpPassword"])
        return client.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/{name}", io.BytesIO(data))
    finally:
        client.quit()


# ------------------------------------------------------------------------------------ the embedded server


def test_metrics_count_real_traffic_by_route_outcome_and_import(own_db: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(database_url=own_db, data_dir=data_dir)
    tenant = make_tenant(settings)
    limited = make_tenant(settings)
    configure(own_db, limited["name"], {"rateLimitPerSecond": 0.01, "rateLimitBurst": 1})
    server = start_server(own_db, data_dir, env=QUIET)
    try:
        base = server.base_url
        assert server.ftp_url is not None
        with httpx.Client(base_url=base, headers={"apikey": tenant["apiKey"]}, timeout=60) as api:
            email = f"m-{uuid.uuid4().hex[:8]}@example.com"
            cid = api.post("/api/v2/contacts", json={"email": email}).json()["id"]
            pid = api.post(
                "/api/v2/promotions/multichannels", json=promotion_body(end=None, channels=[channel("POS")])
            ).json()["id"]
            assert api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
            first, second, third = (
                api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"] for _ in range(3)
            )
            fetched = api.get(f"/api/v2/contacts/{cid}/promotions", params={"redemptionChannelType": "POS"})
            assert fetched.status_code == 200 and len(fetched.json()) == 3
            pos = {"redemptionChannel": "POS"}
            assert api.post(f"/api/v2/promotions/codes/{first}/redeem", json=pos).status_code == 200
            assert api.post(f"/api/v2/promotions/codes/{first}/redeem", json=pos).status_code == 409
            wrong = api.post(f"/api/v2/promotions/codes/{second}/redeem", json={"redemptionChannel": "ECOM"})
            assert wrong.json()["errorCode"] == "PromotionNotValidForRedemptionChannel"
            replay = {"Idempotency-Key": f"sale-{second}"}
            for _ in range(2):  # the second answer is the first one replayed, not a second redemption
                assert api.post(f"/api/v2/promotions/codes/{second}/redeem", json=pos, headers=replay).status_code == 200  # fmt: skip
            # A receipt that redeems one assignment (usedPromotions) and names one that does not exist.
            fourth = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
            sale = receipt_body(key=email, used=[{"couponId": fourth}, {"couponId": str(uuid.uuid4())}],
                                created=datetime.now(UTC))  # fmt: skip
            r = api.post("/api/v2/receipts", json=sale)
            assert r.status_code == 200 and len(r.json()["warnings"]) == 1, r.text
        with httpx.Client(base_url=base, headers={"apikey": limited["apiKey"]}, timeout=60) as other:
            assert [other.get("/api/v2/contacts/count").status_code for _ in range(2)] == [200, 429]

        # A redemption file: one line applied, one already redeemed, imported by the server's worker.
        at = datetime.now(UTC)
        xml = write_redemptions([
            Redemption(coupon_id=third, redemption_channel="POS", redeemed_on=at, idempotency_key=f"f-{third}"),
            Redemption(coupon_id=first, redemption_channel="POS", redeemed_on=at, idempotency_key=f"f-{first}"),
        ])  # fmt: skip
        assert upload(server.ftp_url, tenant, "20260310120000_1_redemptions.xml", xml).startswith("226")

        def scrape() -> Samples:
            r = httpx.get(f"{base}/metrics", timeout=30)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            return parse(r.text)

        def imported() -> Samples | None:
            s = scrape()
            done = value(s, "promoflow_job_duration_seconds_count", kind="file_import", outcome="succeeded")
            return s if done >= 1 else None

        s = wait_for(imported, what="the import to be counted")
    finally:
        server.stop()

    # Requests by route template and status, with their latency histograms.
    fetch = "/api/v2/contacts/{contact_id}/promotions"
    redeem = "/api/v2/promotions/codes/{promotion_id}/redeem"
    assert value(s, "promoflow_http_requests_total", method="GET", route=fetch, status="200") == 1
    assert value(s, "promoflow_http_requests_total", method="POST", route=redeem, status="200") == 3
    assert value(s, "promoflow_http_requests_total", method="POST", route=redeem, status="409") == 2
    assert value(s, "promoflow_http_request_duration_seconds_count", method="POST", route=redeem) == 5
    assert (
        value(s, "promoflow_http_request_duration_seconds_bucket", method="POST", route=redeem, le="+Inf")
        == 5
    )
    assert value(s, "promoflow_http_request_duration_seconds_sum", method="POST", route=redeem) > 0
    assert (
        value(s, "promoflow_http_requests_total", method="GET", route="/api/v2/contacts/count", status="429")
        == 1
    )
    # No raw path ever becomes a label (ids would make a series per customer).
    assert not [labels for _, labels in s for k, v in labels if GUID.search(v)]
    # Redeem outcomes by source, refusals by the rule's reason (a file line's verdict for files).
    assert value(s, "promoflow_redeem_total", outcome="redeemed", reason="", source="api") == 2
    assert value(s, "promoflow_redeem_total", outcome="already_redeemed", reason="", source="api") == 1
    assert (
        value(s, "promoflow_redeem_total", outcome="refused", reason="PromotionNotValidForRedemptionChannel",
              source="api")
        == 1
    )  # fmt: skip
    assert value(s, "promoflow_redeem_total", outcome="replayed", reason="", source="api") == 1
    assert value(s, "promoflow_redeem_total", outcome="redeemed", reason="", source="receipt") == 1
    assert (
        value(s, "promoflow_redeem_total", outcome="refused", reason="PromotionNotFound", source="receipt")
        == 1
    )
    assert value(s, "promoflow_redeem_total", outcome="redeemed", reason="", source="file") == 1
    assert value(s, "promoflow_redeem_total", outcome="already_redeemed", reason="", source="file") == 1
    assert value(s, "promoflow_rate_limited_total") == 1
    # The import: its records by verdict, the job's duration, and the queue it left empty.
    assert value(s, "promoflow_import_records_total", kind="redemptions", verdict="applied") == 1
    assert (
        value(s, "promoflow_import_records_total", kind="redemptions", verdict="conflictAlreadyRedeemed") == 1
    )
    assert value(s, "promoflow_import_queue_files", status="queued") == 0
    assert value(s, "promoflow_import_queue_oldest_age_seconds") == 0
    assert value(s, "promoflow_queue_up") == 1
    # The process's pool and the 'shown' buffer are there.
    assert value(s, "promoflow_db_pool_capacity", pool="main") > 0
    assert ("promoflow_shown_buffered_views", frozenset()) in s


# ---------------------------------------------------------------------------- several API processes (PG)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A `promoflow …` process whose output is drained; ``ready`` is a line to wait for."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str) -> None:
        self.proc = subprocess.Popen(
            tied([sys.executable, "-m", "promoflow.cli", *args]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **QUIET, **env}, start_new_session=True,
        )  # fmt: skip
        self.output: list[str] = []
        self.match: re.Match[str] | None = None
        self._pattern = re.compile(ready)
        self._ready = threading.Event()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self._ready.wait(60) or self.match is None:
            self.stop()
            raise RuntimeError("no start line:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if self.match is None:
                self.match = self._pattern.search(line)
                if self.match:
                    self._ready.set()
        self._ready.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._drainer.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def _pids(directory: Path, prefix: str) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob(f"{prefix}_*.db")}


@pytest.mark.postgres
def test_api_workers_merge_their_metrics_and_a_killed_process_is_marked(pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stale = data_dir / "metrics" / "run-999999999"  # left by a run that crashed: no such process
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"")
    tenant = make_tenant(Settings(database_url=pg_url, data_dir=data_dir))
    port = free_port()
    api = Proc(["api", "--workers", "2", "--port", str(port), "--database-url", pg_url, "--data-dir", str(data_dir)],
               {}, r"starting 2 processes")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        run_dir = data_dir / "metrics" / f"run-{api.proc.pid}"
        assert not stale.exists()

        def both_up() -> bool:
            try:
                httpx.get(f"{base}/healthz", timeout=5)
            except httpx.TransportError:
                return False
            return len(_pids(run_dir, "gauge_livesum")) == 2  # each process samples its pools into its file

        wait_for(both_up, what="two API processes")
        n = 40
        for _ in range(n):  # a new connection each time, so both processes answer some
            assert httpx.get(f"{base}/api/v2/contacts/count", headers={"apikey": tenant["apiKey"]}).status_code == 200  # fmt: skip
        s = parse(httpx.get(f"{base}/metrics").text)
        route = {"method": "GET", "route": "/api/v2/contacts/count"}
        assert value(s, "promoflow_http_requests_total", **route, status="200") == n
        one = value(s, "promoflow_db_pool_capacity", pool="main")
        assert one > 0
        counted = _pids(run_dir, "counter")
        assert len(counted) >= 1

        # SIGKILL one process: its counts stay, its live gauges go once the next scrape sees it is gone.
        victim = sorted(_pids(run_dir, "gauge_livesum"))[0]
        os.kill(victim, signal.SIGKILL)

        def marked() -> bool:
            httpx.get(f"{base}/metrics", timeout=30)  # a scrape marks the processes that are gone
            return victim not in _pids(run_dir, "gauge_livesum")

        wait_for(marked, what="the killed process marked dead")
        s = parse(httpx.get(f"{base}/metrics").text)
        assert value(s, "promoflow_http_requests_total", **route, status="200") >= n
    finally:
        code = api.stop()
    assert code == 0 and "Traceback" not in "".join(api.output), "".join(api.output)
    assert not run_dir.exists()  # the run's directory goes with it


# ------------------------------------------------------------------------------ `promoflow worker`'s port


def test_a_worker_serves_its_job_metrics_on_its_own_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    upgrade(url)
    tenant = make_tenant(Settings(database_url=url, data_dir=tmp_path))

    async def enqueue() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as conn:
                await queue.enqueue(
                    conn, uuid.UUID(tenant["tenantId"]), "no_such_kind", {}, datetime.now(UTC)
                )
        finally:
            await db.dispose()

    asyncio.run(enqueue())
    worker = Proc(["worker", "--database-url", url, "--data-dir", str(tmp_path)],
                  {"PROMOFLOW_WORKER_METRICS_PORT": "0"}, r"worker metrics on (http://\S+)")  # fmt: skip
    try:
        assert worker.match is not None
        where = worker.match.group(1)

        def failed() -> Samples | None:
            s = parse(httpx.get(where, timeout=10).text)
            return (
                s if value(s, "promoflow_job_failures_total", kind="no_such_kind", permanent="true") else None
            )

        s = wait_for(failed, what="the failed job counted")
        assert value(s, "promoflow_job_duration_seconds_count", kind="no_such_kind", outcome="failed") == 1
    finally:
        assert worker.stop() in (0, -signal.SIGTERM)


# ------------------------------------------------------------------------------------ the queue's lag


def test_the_runnable_lag_leaves_out_a_file_waiting_behind_its_tenants_import(
    own_db: str, tmp_path: Path
) -> None:
    """A tenant's files run one at a time: its second file waits for its first, which more workers cannot
    change. promoflow_job_queue_lag_seconds counts that wait; promoflow_job_runnable_lag_seconds (the alert's)
    counts only jobs a free worker could take, from when they could: real jobs through the queue's own enqueue,
    claim, succeed and fail, on a clock the test moves."""
    from promoflow.kit.clock import FrozenClock
    from promoflow.server.transfer.inbox import transfer_queue

    t0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    clock = FrozenClock(t0)
    settings = Settings(database_url=own_db, data_dir=tmp_path, metrics_db_cache_seconds=0, run_worker=False)
    tenant = uuid.UUID(make_tenant(settings)["tenantId"])

    async def step(fn: Callable[[Any], Any]) -> Any:
        db = Database(own_db, pool_size=1)
        try:
            async with db.write() as conn:
                return await fn(conn)
        finally:
            await db.dispose()

    def enqueue(kind: str = "file_import", queued: str | None = transfer_queue(tenant)) -> None:
        asyncio.run(step(lambda c: queue.enqueue(c, tenant, kind, {}, clock.now(), queue=queued)))

    def claim() -> Any:
        return asyncio.run(step(lambda c: queue.claim(c, "w1", clock.now())))

    def lags(client: TestClient, kind: str = "file_import") -> tuple[float, float]:
        s = parse(client.get("/metrics").text)
        return (value(s, "promoflow_job_queue_lag_seconds", kind=kind),
                value(s, "promoflow_job_runnable_lag_seconds", kind=kind))  # fmt: skip

    minutes = timedelta(minutes=1)
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        for _ in range(3):  # three files of one tenant, uploaded at t0
            enqueue()
        first = claim()
        clock.set(t0 + 20 * minutes)  # the first imports; the others wait for it, as they must
        assert lags(client) == (1200, 0)

        asyncio.run(step(lambda c: queue.succeed(c, first.id, "w1", t0 + 30 * minutes, {})))
        clock.set(t0 + 32 * minutes)  # the second could run from t0+30: it has waited 2 minutes for a worker
        assert lags(client) == (1920, 120)

        second = claim()
        assert lags(client) == (1920, 0)  # taken; the third waits behind it again
        asyncio.run(step(lambda c: queue.fail(c, second, "w1", t0 + 40 * minutes, "broken", permanent=True)))
        clock.set(t0 + 45 * minutes)  # a failed job frees its queue as a finished one does
        assert lags(client) == (2700, 300)

        clock.set(t0 + 44 * minutes)
        enqueue("no_such_kind", None)  # a job of no queue can run as soon as it is due
        clock.set(t0 + 45 * minutes)
        assert lags(client, "no_such_kind") == (60, 60)
        assert claim().queue == transfer_queue(tenant)  # the file first (lower id)
        assert lags(client) == (0, 0)


# -------------------------------------------------------------------------------------- access to /metrics


def test_metrics_need_the_token_when_one_is_set(settings: Settings, clock: Any) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "s3cret"}), clock=clock, run_worker=False)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "promoflow_http_requests_total" in r.text
    off = create_app(settings.model_copy(update={"metrics_enabled": False}), clock=clock, run_worker=False)
    with TestClient(off) as client:
        assert client.get("/metrics").status_code == 404


# ------------------------------------------------------------------------------------------- documentation

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _metric_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    from promoflow.server.observability import collect, metrics

    names = {
        m._name + ("_total" if m._type == "counter" else "")
        for m in vars(metrics.get()).values()
        if isinstance(m, MetricWrapperBase)
    }
    source = Path(collect.__file__).read_text()
    names |= set(re.findall(r'GaugeMetricFamily\(\s*"(\w+)"', source))
    return names


def test_every_metric_is_documented_and_the_dashboard_and_alerts_use_only_real_ones() -> None:
    import json

    import yaml

    from promoflow.server.observability.collect import FILE_IMPORT_JOB
    from promoflow.server.transfer.inbox import FILE_IMPORT_JOB as TRANSFER_KIND

    assert FILE_IMPORT_JOB == TRANSFER_KIND
    names = _metric_names()
    assert len(names) >= 20
    operators = (DOCS / "operators.md").read_text()
    assert not [n for n in names if f"`{n}`" not in operators], "undocumented metrics"

    def used(expr: str) -> set[str]:
        found = set(re.findall(r"\b(promoflow_\w+)", expr))
        return {re.sub(r"_(bucket|count|sum)$", "", n) if n not in names else n for n in found}

    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and all(used(e) <= names for e in exprs), [e for e in exprs if not used(e) <= names]
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    alerts = {r["alert"]: r["expr"] for r in rules}
    assert {"PromoflowJobQueueLag", "PromoflowHigh5xxRate", "PromoflowFetchP99High"} <= set(alerts)
    assert all(used(e) and used(e) <= names for e in alerts.values())


def test_after_commit_hooks_run_only_once_the_transaction_committed(db_url: str) -> None:
    """What counts a redemption by a receipt or a file: never for work that rolled back."""
    from sqlalchemy import text

    from promoflow.server.db import after_commit

    ran: list[str] = []

    async def run() -> None:
        db = Database(db_url, pool_size=1)
        try:
            with pytest.raises(RuntimeError):
                async with db.write() as conn:
                    await conn.execute(text("SELECT 1"))
                    after_commit(conn, lambda: ran.append("rolled back"))
                    raise RuntimeError("boom")
            async with db.write() as conn:
                await conn.execute(text("SELECT 1"))
                after_commit(conn, lambda: ran.append("committed"))
                assert ran == []  # not before the commit
        finally:
            await db.dispose()

    asyncio.run(run())
    assert ran == ["committed"]
