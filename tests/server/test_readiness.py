"""/readyz (issue 15 §4): the database, the job queue and the data dir's disk, each with what it measured; 503
with Retry-After when a check fails its threshold (the thresholds are settings)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.db import Database
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.models import job
from promoflow.server.transfer.inbox import transfer_queue
from promoflow.server.worker import queue
from tests.conftest import START, make_tenant, pg_database


def _ready(settings: Settings, clock: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        r = client.get("/readyz")
        return r.status_code, r.json(), dict(r.headers)


def test_ready_reports_database_queue_and_disk(settings: Settings, clock: Any) -> None:
    status, body, _ = _ready(settings, clock)
    assert status == 200 and body["status"] == "ready"
    checks = body["checks"]
    assert checks["database"]["status"] == "ok" and checks["database"]["latencyMs"] >= 0
    assert checks["queue"]["status"] == "ok" and checks["queue"]["maxLagSeconds"] is None
    assert {"queued", "running", "lagSeconds", "filesWaiting", "oldestFileWaitingSeconds"} <= set(
        checks["queue"]
    )
    disk = checks["disk"]
    assert disk["status"] == "ok" and disk["freeBytes"] >= disk["minFreeBytes"] == 256 * 1024 * 1024


def test_not_ready_when_the_disk_is_below_its_threshold(settings: Settings, clock: Any) -> None:
    status, body, headers = _ready(settings.model_copy(update={"ready_min_free_disk_mb": 10**12}), clock)
    assert status == 503 and body["status"] == "not-ready" and headers["retry-after"]
    assert body["checks"]["disk"]["status"] == "failing"
    assert body["checks"]["database"]["status"] == "ok"


def test_not_ready_when_the_oldest_due_job_is_later_than_allowed(settings: Settings, clock: Any) -> None:
    tenant = make_tenant(settings)

    async def late_job() -> int:
        db = Database(settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                row = await queue.enqueue(conn, uuid.UUID(tenant["tenantId"]), "no_such_kind", {}, START)
                await conn.execute(
                    update(job).where(job.c.id == row.id).values(run_after=START - timedelta(hours=1))
                )
                return int(row.id)
        finally:
            await db.dispose()

    async def done(job_id: int) -> None:  # other tests' workers must not find it
        db = Database(settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await conn.execute(update(job).where(job.c.id == job_id).values(status="failed"))
        finally:
            await db.dispose()

    job_id = asyncio.run(late_job())
    try:
        # Reported, never failing, unless a threshold is set.
        status, body, _ = _ready(settings, clock)
        assert status == 200 and body["checks"]["queue"]["lagSeconds"] >= 3600
        strict = settings.model_copy(update={"ready_max_queue_age_seconds": 600})
        status, body, headers = _ready(strict, clock)
        assert status == 503 and body["status"] == "not-ready" and headers["retry-after"]
        assert (
            body["checks"]["queue"]["status"] == "failing" and body["checks"]["queue"]["maxLagSeconds"] == 600
        )
    finally:
        asyncio.run(done(job_id))


@pytest.fixture
def own_settings(db_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a database of this test alone: what /readyz judges is every tenant's jobs."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
        upgrade(url)
        yield Settings(database_url=url, data_dir=tmp_path, run_worker=False)
        return
    with pg_database("promoflow_ready") as url:
        yield Settings(database_url=url, data_dir=tmp_path, run_worker=False)


def test_a_file_waiting_for_its_tenants_running_import_does_not_fail_readiness(
    own_settings: Settings, clock: Any
) -> None:
    """Its wait shows in lagSeconds; readiness is judged on the jobs a free worker could take."""
    tenant = uuid.UUID(make_tenant(own_settings)["tenantId"])

    async def running_import_and_one_behind() -> None:
        db = Database(own_settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                for _ in range(2):
                    await queue.enqueue(conn, tenant, "file_import", {}, START, queue=transfer_queue(tenant))
                assert await queue.claim(conn, "w1", START) is not None
        finally:
            await db.dispose()

    asyncio.run(running_import_and_one_behind())
    clock.set(START + timedelta(hours=1))
    strict = own_settings.model_copy(update={"ready_max_queue_age_seconds": 600})
    status, body, _ = _ready(strict, clock)
    queue_check = body["checks"]["queue"]
    assert status == 200 and queue_check["status"] == "ok", body
    assert queue_check["lagSeconds"] == 3600 and queue_check["runnableLagSeconds"] == 0
