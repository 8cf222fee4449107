"""The real processes: `promoflow serve` (API + FTP + worker), `promoflow ftp` with separate `promoflow worker`s,
a worker killed with SIGKILL in the middle of a file and restarted, and two workers racing on PostgreSQL.

Waiting is a bounded poll of observable state (the database, the result file), never a fixed sleep."""

from __future__ import annotations

import ftplib
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from promoflow.server.config import Settings
from promoflow.server.db import make_sync_engine
from promoflow.server.models import assignment, contact, file_import, job, promotion, redemption
from promoflow.wire.xml import (
    REDEMPTION_IMPORT_DIR,
    Redemption,
    Verdict,
    load_import_result,
    result_files_for,
    write_redemptions,
)
from tests.conftest import make_tenant
from tests.support.children import tied
from tests.support.db import read_engine
from tests.support.servers import start_server

QUIET = {"PROMOFLOW_EXPORT_INTERVAL_SECONDS": "0", "PROMOFLOW_LOG_LEVEL": "warning"}


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


class Proc:
    def __init__(
        self, args: list[str], env: dict[str, str], ready: str | None, wrap: list[str] | None = None
    ) -> None:
        """`promoflow ARGS` (run by the command ``wrap``, e.g. in namespaces of its own, when given)."""
        self.proc = subprocess.Popen(
            tied([*(wrap or []), sys.executable, "-m", "promoflow.cli", *args]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **QUIET, **env}, start_new_session=True,
        )  # fmt: skip
        self.output: list[str] = []
        self._ready = threading.Event()
        self._pattern = re.compile(ready) if ready else None
        self.match: re.Match[str] | None = None
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if ready and not self._ready.wait(60):
            self.kill()
            raise RuntimeError("no start line:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if self._pattern is not None and self.match is None:
                self.match = self._pattern.search(line)
                if self.match:
                    self._ready.set()
        self._ready.set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self._close()

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        self._drainer.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.kill(signal.SIGTERM)


def _env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {"PROMOFLOW_DATABASE_URL": url, "PROMOFLOW_DATA_DIR": str(data_dir), **extra}


def seed_coupons(url: str, tenant: dict[str, Any], n: int) -> list[str]:
    """n assignments of one active promotion (rows written directly: this is setup, not the thing tested)."""
    tid = uuid.UUID(tenant["tenantId"])
    now = datetime.now(UTC)
    cid, pid = uuid.uuid4(), uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(n)]
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            email = f"p-{cid.hex[:8]}@example.com"
            conn.execute(insert(contact).values(id=cid, tenant_id=tid, contact_type="Member", attributes={"email": email},
                                                preferences={}, key_value=email, email=email, approved=True,
                                                created_at=now, updated_at=now))  # fmt: skip
            ch = [
                {
                    "type": "POS",
                    "valueType": "PERCENT",
                    "value": "10",
                    "localValues": None,
                    "instruction": None,
                }
            ]
            conn.execute(insert(promotion).values(id=pid, tenant_id=tid, name="p", start_date=datetime(2020, 1, 1).date(),
                                                  channels=ch, channel_mask=1, return_policy="none", activated_at=now,
                                                  created_at=now, updated_at=now))  # fmt: skip
            conn.execute(insert(assignment), [
                {"id": a, "tenant_id": tid, "promotion_id": pid, "contact_id": cid, "valid_from": now - timedelta(days=1),
                 "source": "test", "created_at": now, "redemption_count": 0, "reactivation_count": 0} for a in ids
            ])  # fmt: skip
    finally:
        engine.dispose()
    return [str(a) for a in ids]


def redemption_file(coupons: list[str]) -> bytes:
    at = datetime.now(UTC)
    return write_redemptions([
        Redemption(coupon_id=c, redemption_channel="POS", redeemed_on=at, idempotency_key=f"k-{c}") for c in coupons
    ])  # fmt: skip


def upload(port: int, tenant: dict[str, Any], name: str, data: bytes) -> str:
    client = ftplib.FTP()
    client.connect("127.0.0.1", port, timeout=60)
    try:
        client.login(tenant["ftpUser"], tenant["ftpPassword"])
        return client.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/{name}", io.BytesIO(data))
    finally:
        client.quit()


def result_path(data_dir: Path, tenant: dict[str, Any], name: str) -> Path:
    """The result file of the one upload named ``name`` (``<name>.<import id>.result.xml``); a path that does not
    exist while there is none yet."""
    folder = data_dir / "ftp" / tenant["tenantId"] / "integration/importResults"
    found = result_files_for(name, (p.name for p in folder.iterdir())) if folder.exists() else []
    assert len(found) <= 1, found
    return folder / (found[0] if found else f"{name}.pending")


def assert_applied_once(url: str, coupons: list[str]) -> None:
    ids = [uuid.UUID(c) for c in coupons]
    engine = read_engine(url)
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                n = conn.scalar(
                    select(func.count()).select_from(redemption).where(redemption.c.assignment_id.in_(chunk))
                )
                assert n == len(chunk)  # one redemption row per assignment …
                counts = set(
                    conn.scalars(select(assignment.c.redemption_count).where(assignment.c.id.in_(chunk)))
                )
                assert counts == {1}  # … and each assignment redeemed exactly once
    finally:
        engine.dispose()


def assert_complete_result(path: Path, n: int) -> None:
    summary, records = load_import_result(path)
    assert summary.status == "processed" and summary.total == n
    assert [r.index for r in records] == list(range(1, n + 1))
    assert {r.verdict for r in records} == {Verdict.APPLIED}, {(r.verdict, r.reason) for r in records}


def test_serve_runs_ftp_and_worker_end_to_end(own_db, data_dir):
    db_url = own_db
    tenant = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
    server = start_server(db_url, data_dir, env={**QUIET, "PROMOFLOW_WORKER_POLL_SECONDS": "0.05"})
    try:
        assert server.ftp_url is not None
        port = int(server.ftp_url.rsplit(":", 1)[1])
        headers = {"apikey": tenant["apiKey"]}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
            c = http.post("/api/v2/contacts", json={"email": "e2e@example.com"}).json()
            body = {"name": "e2e", "validity": {"startDate": "2020-01-01"},
                    "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "10"}]}  # fmt: skip
            p = http.post("/api/v2/promotions/multichannels", json=body).json()
            http.post(f"/api/v2/promotions/multichannels/{p['id']}/activate")
            coupon = http.post(f"/api/v2/contacts/{c['id']}/promotions/{p['id']}/assign").json()["id"]
            name = "20260310120000_1_redemptions.xml"
            assert upload(port, tenant, name, redemption_file([coupon])).startswith("226")
            path = wait_for(lambda: result_path(data_dir, tenant, name).exists(), what="result file")
            assert path
            assert_complete_result(result_path(data_dir, tenant, name), 1)
            items = http.get(f"/api/v2/contacts/{c['id']}/promotions").json()
            assert items == []  # redeemed by the file
            # The result file is published before the import's final status (docs/file-transfer.md, step 6).
            final = wait_for(lambda: http.get("/api/v2/imports").json()["items"][0]["status"] != "running",
                             what="the import's final status")  # fmt: skip
            assert final
            assert http.get("/api/v2/imports").json()["items"][0]["status"] == "done"
    finally:
        server.stop()


def test_ftp_and_worker_as_separate_processes_and_a_file_waiting_for_the_worker(own_db, data_dir):
    db_url = own_db
    tenant = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
    coupons = seed_coupons(db_url, tenant, 300)
    env = _env(db_url, data_dir)
    ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
    with running(ftp):
        assert ftp.match is not None
        port = int(ftp.match.group(1))
        name = "20260310120000_1_redemptions.xml"
        assert upload(port, tenant, name, redemption_file(coupons)).startswith("226")
        # no worker yet: the import waits, queued, with nothing applied
        engine = read_engine(db_url)
        try:
            with engine.connect() as conn:
                status = conn.scalar(select(file_import.c.status).where(file_import.c.file_name == name,
                                     file_import.c.tenant_id == uuid.UUID(tenant["tenantId"])))  # fmt: skip
        finally:
            engine.dispose()
        assert status == "queued"
        worker = Proc(["worker", "--once"], env, None)
        assert worker.wait() == 0, "".join(worker.output)
    assert_applied_once(db_url, coupons)
    assert_complete_result(result_path(data_dir, tenant, name), 300)


def _job_progress(url: str, tenant: dict[str, Any]) -> tuple[int, int | None, str] | None:
    engine = read_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(job.c.progress_done, job.c.progress_total, job.c.status).where(
                    job.c.tenant_id == uuid.UUID(tenant["tenantId"]), job.c.kind == "file_import")
            ).first()  # fmt: skip
            return None if row is None else (row.progress_done, row.progress_total, row.status)
    finally:
        engine.dispose()


@dataclass
class HalfWay:
    tenant: dict[str, Any]
    coupons: list[str]
    env: dict[str, str]
    name: str
    worker: Proc
    done: int


@contextmanager
def worker_half_way(db_url: str, data_dir: Path, n: int = 6000) -> Iterator[HalfWay]:
    """A redemption file of n lines uploaded over FTP and a `promoflow worker` seen (in the database) to have
    committed some of its batches and not all: small batches over many records keep it half-way for seconds.
    The worker is the caller's to stop; whatever happens, it does not outlive the block."""
    tenant = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
    coupons = seed_coupons(db_url, tenant, n)
    env = _env(db_url, data_dir, PROMOFLOW_IMPORT_BATCH_SIZE="20", PROMOFLOW_WORKER_POLL_SECONDS="0.05")
    ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
    with running(ftp):
        assert ftp.match is not None
        name = "20260310120000_1_redemptions.xml"
        assert upload(int(ftp.match.group(1)), tenant, name, redemption_file(coupons)).startswith("226")
        worker = Proc(["worker"], env, r"promoflow worker \S+ running")
        try:
            try:
                progress = wait_for(lambda: (p := _job_progress(db_url, tenant)) and 0 < p[0] < n and p,
                                    timeout=120, what="the import half-way")  # fmt: skip
            except TimeoutError:
                worker.kill()
                raise AssertionError(
                    f"never seen half-way: {_job_progress(db_url, tenant)}\n" + "".join(worker.output)
                ) from None
            assert progress[2] == "running"
            yield HalfWay(tenant, coupons, env, name, worker, progress[0])
        finally:
            worker.kill()


def test_a_worker_killed_mid_file_resumes_and_applies_every_record_once(own_db, data_dir):
    db_url = own_db
    n = 6000
    with worker_half_way(db_url, data_dir, n) as run:
        run.worker.kill(signal.SIGKILL)  # no goodbye: mid-batch, mid-transaction, whatever it was doing
        done_at_kill = _job_progress(db_url, run.tenant)
        assert done_at_kill is not None and run.done <= done_at_kill[0] < n and done_at_kill[2] == "running"
        # A new worker finds the job stalled (no heartbeat for 0.5 s) and resumes it after the last batch.
        restart = Proc(["worker", "--once"], {**run.env, "PROMOFLOW_WORKER_STALL_SECONDS": "0.5"}, None)
        assert restart.wait() == 0, "".join(restart.output)
    assert _job_progress(db_url, run.tenant)[2] == "succeeded"  # type: ignore[index]
    assert_applied_once(db_url, run.coupons)
    assert_complete_result(result_path(data_dir, run.tenant, run.name), n)


def test_a_worker_told_to_stop_mid_file_hands_the_job_back_and_the_next_one_finishes_it(own_db, data_dir):
    """SIGTERM is a graceful stop: the worker ends after the batches in flight commit, the job goes back to the
    queue at once (not failed, the attempt not counted, no stall timeout to wait for), and the next worker
    resumes after the last committed batch."""
    db_url = own_db
    n = 6000
    with worker_half_way(db_url, data_dir, n) as run:
        run.worker.proc.send_signal(signal.SIGTERM)
        assert run.worker.wait(60) == 0, "".join(run.worker.output)
        done, _, status = _job_progress(db_url, run.tenant)  # type: ignore[misc]
        assert status == "queued" and run.done <= done < n  # handed back half-way, not finished nor failed
        engine = read_engine(db_url)
        try:
            with engine.connect() as conn:
                attempts, locked_by = conn.execute(select(job.c.attempts, job.c.locked_by).where(
                    job.c.tenant_id == uuid.UUID(run.tenant["tenantId"]), job.c.kind == "file_import")).one()  # fmt: skip
        finally:
            engine.dispose()
        assert attempts == 0 and locked_by is None
        # The default stall timeout (120 s) would keep a stalled job waiting; a released job is due now.
        restart = Proc(["worker", "--once"], run.env, None)
        assert restart.wait() == 0, "".join(restart.output)
    assert _job_progress(db_url, run.tenant)[2] == "succeeded"  # type: ignore[index]
    assert_applied_once(db_url, run.coupons)
    assert_complete_result(result_path(data_dir, run.tenant, run.name), n)


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_two_workers_race_for_files_on_postgresql(own_db, data_dir):
    url = own_db
    tenants = [make_tenant(Settings(database_url=url, data_dir=data_dir)) for _ in range(3)]
    files: dict[str, list[tuple[str, list[str]]]] = {}
    env = _env(url, data_dir, PROMOFLOW_IMPORT_BATCH_SIZE="50", PROMOFLOW_WORKER_POLL_SECONDS="0.02")
    ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
    with running(ftp):
        assert ftp.match is not None
        port = int(ftp.match.group(1))
        for t in tenants:
            files[t["tenantId"]] = []
            for i in range(3):
                coupons = seed_coupons(url, t, 400)
                name = f"2026031012000{i}_1_redemptions.xml"
                assert upload(port, t, name, redemption_file(coupons)).startswith("226")
                files[t["tenantId"]].append((name, coupons))
        workers = [Proc(["worker"], env, r"promoflow worker \S+ running") for _ in range(2)]
        with running(*workers):
            engine = read_engine(url)
            ids = [uuid.UUID(t["tenantId"]) for t in tenants]

            def all_done() -> bool:
                with engine.connect() as conn:
                    states = conn.scalars(
                        select(file_import.c.status).where(file_import.c.tenant_id.in_(ids))
                    ).all()
                return len(states) == 9 and set(states) == {"done"}

            try:
                wait_for(all_done, timeout=120, what="nine imports done")
                with engine.connect() as conn:
                    rows = conn.execute(
                        select(file_import.c.tenant_id, file_import.c.file_name, file_import.c.started_at,
                               file_import.c.finished_at, job.c.locked_by)
                        .join(job, job.c.id == file_import.c.job_id)
                        .where(file_import.c.tenant_id.in_(ids)).order_by(file_import.c.id)
                    ).all()  # fmt: skip
            finally:
                engine.dispose()
    by_tenant: dict[uuid.UUID, list[Any]] = {}
    for r in rows:
        by_tenant.setdefault(r.tenant_id, []).append(r)
    for seq in by_tenant.values():
        # one tenant's files ran one after the other, in upload order
        assert [r.file_name for r in seq] == sorted(r.file_name for r in seq)
        for a, b in itertools.pairwise(seq):
            assert b.started_at >= a.finished_at
    for t in tenants:
        for name, coupons in files[t["tenantId"]]:
            assert_applied_once(url, coupons)
            assert_complete_result(result_path(data_dir, t, name), len(coupons))


def test_a_small_file_of_another_tenant_finishes_long_before_a_big_one_in_a_worker_process(own_db, data_dir):
    """Issue 11 §11 with the real processes: tenant A's 6,000-line file (batches of 20) and then tenant B's
    one-line file are queued before a `promoflow worker` starts; B's import finishes while A's is still running,
    and A's then finishes with every record applied once."""
    db_url = own_db
    a = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
    b = make_tenant(Settings(database_url=db_url, data_dir=data_dir))
    big, small = seed_coupons(db_url, a, 6000), seed_coupons(db_url, b, 1)
    env = _env(db_url, data_dir, PROMOFLOW_IMPORT_BATCH_SIZE="20", PROMOFLOW_WORKER_POLL_SECONDS="0.05")
    ftp = Proc(["ftp", "--port", "0"], env, r"promoflow ftp listening on ftp://[\d.]+:(\d+)")
    with running(ftp):
        assert ftp.match is not None
        port = int(ftp.match.group(1))
        assert upload(port, a, "20260310120000_A_redemptions.xml", redemption_file(big)).startswith("226")
        assert upload(port, b, "20260310120001_B_redemptions.xml", redemption_file(small)).startswith("226")
        worker = Proc(["worker"], env, r"promoflow worker \S+ running")
        with running(worker):
            wait_for(lambda: result_path(data_dir, b, "20260310120001_B_redemptions.xml").exists(), timeout=120,
                     what="B's result")  # fmt: skip
            progress = _job_progress(db_url, a)
            assert progress is not None and progress[2] == "running" and progress[0] < 6000, progress
            wait_for(lambda: result_path(data_dir, a, "20260310120000_A_redemptions.xml").exists(), timeout=300,
                     what="A's result")  # fmt: skip
    assert_complete_result(result_path(data_dir, b, "20260310120001_B_redemptions.xml"), 1)
    assert_complete_result(result_path(data_dir, a, "20260310120000_A_redemptions.xml"), 6000)
    assert_applied_once(db_url, big + small)
