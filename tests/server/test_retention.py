"""Retention (issue 11 §7): expired idempotency keys, old per-record import verdicts, old 'shown' events, old
finished jobs, old processed upload files and old result files are deleted by the workers' housekeeping, in bounded batches; recent ones stay; the
promotion reports give the same figures after a purge. Each test has a database of its own: the purges look at
every tenant's rows."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from promoflow.kit.clock import FrozenClock
from promoflow.server.config import Settings
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.models import file_import, idempotency_record, import_record, job
from promoflow.server.models.receipts import promotion_view
from promoflow.server.retention.service import (
    _Budget,
    last_run,
    purge_idempotency_keys,
    run_retention,
)
from promoflow.server.tenant.service import TenantService
from promoflow.server.transfer.files import FileStore
from promoflow.server.worker.runner import Worker
from tests.conftest import PG_ADMIN_URL, Api, make_tenant

from ._support import assign, new_contact, new_promotion

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Own:
    url: str
    settings: Settings

    def db(self) -> Database:
        return Database(self.url, pool_size=2)

    def count(self, table: Any, *where: Any) -> int:
        engine = make_sync_engine(self.url)
        try:
            with engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)
        finally:
            engine.dispose()

    def insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        engine = make_sync_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(insert(table), rows)
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Own]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
        name = None
    else:
        name = f"promoflow_ret_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        data = tmp_path / "data"
        data.mkdir()
        settings = Settings(database_url=url, data_dir=data, run_worker=False, default_rate_limit_per_second=0,
                            retention_batch_size=2)  # fmt: skip
        yield Own(url, settings)
    finally:
        if name is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _idempotency(tenant_id: uuid.UUID, key: str, expires: datetime) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "key": key, "fingerprint": "f" * 64, "state": "done", "response_status": 200,
            "response_body": b"{}", "locked_until": expires, "created_at": expires - 48 * timedelta(hours=1),
            "expires_at": expires}  # fmt: skip


def _import(
    tenant_id: uuid.UUID, status: str, received: datetime, finished: datetime | None
) -> dict[str, Any]:
    return {"public_id": uuid.uuid4(), "tenant_id": tenant_id, "kind": "redemptions", "folder": "/x",
            "file_name": f"{uuid.uuid4().hex}.xml", "status": status, "received_at": received,
            "finished_at": finished}  # fmt: skip


def _records(import_id: int, tenant_id: uuid.UUID, n: int) -> list[dict[str, Any]]:
    return [{"import_id": import_id, "record_index": i, "tenant_id": tenant_id, "verdict": "applied"}
            for i in range(1, n + 1)]  # fmt: skip


def _view(tenant_id: uuid.UUID, at: datetime) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "contact_id": uuid.uuid4(), "at": at, "last_at": at, "times": 1,
            "assignment_ids": [uuid.uuid4()]}  # fmt: skip


def _file(folder: Path, name: str, age: timedelta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"<x/>")
    stamp = time.time() - age.total_seconds()
    os.utime(path, (stamp, stamp))
    return path


def _import_ids(own: Own) -> dict[str, int]:
    engine = make_sync_engine(own.url)
    try:
        with engine.connect() as conn:
            return {
                r.file_name: r.id for r in conn.execute(select(file_import.c.file_name, file_import.c.id))
            }
    finally:
        engine.dispose()


def _set(own: Own, name: str, changes: dict[str, Any]) -> None:
    async def go() -> None:
        db = own.db()
        try:
            async with db.write() as conn:
                await TenantService(NOW).update_settings(conn, name, changes)
        finally:
            await db.dispose()

    asyncio.run(go())


def test_old_rows_and_files_go_recent_ones_stay(own: Own) -> None:
    a, b, c = (make_tenant(own.settings) for _ in range(3))
    ta, tb, tc = (uuid.UUID(t["tenantId"]) for t in (a, b, c))
    _set(own, b["name"], {"processedFileRetentionDays": 0})  # b keeps its processed files forever
    _set(own, c["name"], {"processedFileRetentionDays": 60})

    # Idempotency keys: five expired (more than a batch of 2), two still valid.
    own.insert(idempotency_record, [_idempotency(ta, f"old-{i}", NOW - timedelta(minutes=i + 1)) for i in range(5)]
               + [_idempotency(tb, f"live-{i}", NOW + timedelta(hours=i + 1)) for i in range(2)])  # fmt: skip

    # Imports, in upload order: one still running since long ago (kept), two finished 100 and 95 days ago
    # (verdicts go), one finished 10 days ago (kept).
    imports = [
        ("running", NOW - 200 * DAY, None, 2, ta),
        ("done", NOW - 101 * DAY, NOW - 100 * DAY, 5, ta),
        ("failed", NOW - 95 * DAY, NOW - 95 * DAY, 3, tb),
        ("done", NOW - 10 * DAY, NOW - 10 * DAY, 3, ta),
    ]
    rows = [_import(t, status, received, finished) for status, received, finished, _, t in imports]
    own.insert(file_import, rows)
    ids = _import_ids(own)
    import_ids = [ids[r["file_name"]] for r in rows]
    for import_id, (_, _, _, n, t) in zip(import_ids, imports, strict=True):
        own.insert(import_record, _records(import_id, t, n))

    # 'Shown' events: three from 200 days ago, two from 10 days ago (retention 180 days).
    own.insert(promotion_view, [_view(ta, NOW - 200 * DAY + timedelta(minutes=i)) for i in range(3)]
               + [_view(tb, NOW - 10 * DAY + timedelta(minutes=i)) for i in range(2)])  # fmt: skip

    # Processed files: default 30 days for a, forever for b, 60 days for c.
    store = FileStore(own.settings.data_dir)
    pa, pb, pc = (store.folder(t, "/integration/processed") for t in (ta, tb, tc))
    old_a, new_a = _file(pa, "old.xml", 40 * DAY), _file(pa, "new.xml", 5 * DAY)
    link = pa / "link.xml"
    link.symlink_to(old_a)  # a link is never followed nor removed
    os.utime(link, (0, 0), follow_symlinks=False)
    (pa / "sub").mkdir()
    old_b = _file(pb, "old.xml", 400 * DAY)
    mid_c, old_c = _file(pc, "mid.xml", 40 * DAY), _file(pc, "old.xml", 70 * DAY)

    async def purge() -> Any:
        db = own.db()
        try:
            return await run_retention(db, own.settings, NOW)
        finally:
            await db.dispose()

    report = asyncio.run(purge())
    assert report.complete and not report.errors
    assert (report.idempotency_keys, report.import_records, report.promotion_views, report.processed_files) == (
        5, 8, 3, 2
    )  # fmt: skip
    assert (
        own.count(idempotency_record) == 2
        and own.count(idempotency_record, idempotency_record.c.tenant_id == tb) == 2
    )
    left = {i: own.count(import_record, import_record.c.import_id == i) for i in import_ids}
    assert left == {import_ids[0]: 2, import_ids[1]: 0, import_ids[2]: 0, import_ids[3]: 3}
    assert own.count(file_import) == 4  # the imports themselves (status, counts, result file) stay
    assert (
        own.count(promotion_view) == 2
        and own.count(promotion_view, promotion_view.c.at < NOW - 180 * DAY) == 0
    )
    assert not old_a.exists() and new_a.exists() and link.is_symlink() and (pa / "sub").is_dir()
    assert old_b.exists() and mid_c.exists() and not old_c.exists()

    again = asyncio.run(purge())  # nothing left to do: nothing deleted, nothing kept wrongly
    assert again.total == 0 and again.complete


def _job(tenant_id: uuid.UUID, status: str, finished: datetime | None) -> dict[str, Any]:
    created = (finished or NOW) - DAY
    return {"public_id": uuid.uuid4(), "tenant_id": tenant_id, "kind": "bulk_assign", "payload": {"lines": ["x"]},
            "status": status, "run_after": created, "created_at": created, "finished_at": finished,
            "result": {"assigned": 1} if status == "succeeded" else None}  # fmt: skip


def test_old_finished_jobs_and_old_result_files_go(own: Own) -> None:
    ta, tb = (uuid.UUID(make_tenant(own.settings)["tenantId"]) for _ in range(2))
    # Retention 30 days: three finished long ago (more than a batch of 2) go; a recent one, a queued and a
    # running one (whatever their age) stay.
    jobs = [
        _job(ta, "succeeded", NOW - 40 * DAY),
        _job(tb, "failed", NOW - 35 * DAY),
        _job(ta, "succeeded", NOW - 31 * DAY),
        _job(ta, "succeeded", NOW - 5 * DAY),
        {**_job(ta, "queued", None), "created_at": NOW - 90 * DAY, "run_after": NOW - 90 * DAY},
        {**_job(tb, "running", None), "created_at": NOW - 90 * DAY, "run_after": NOW - 90 * DAY},
    ]
    own.insert(job, jobs)
    engine = make_sync_engine(own.url)
    try:
        with engine.connect() as conn:
            job_ids = {r.public_id: r.id for r in conn.execute(select(job.c.public_id, job.c.id))}
    finally:
        engine.dispose()
    old_job, new_job = job_ids[jobs[0]["public_id"]], job_ids[jobs[3]["public_id"]]
    own.insert(file_import, [{**_import(ta, "done", NOW - 41 * DAY, NOW - 40 * DAY), "job_id": old_job},
                             {**_import(ta, "done", NOW - 6 * DAY, NOW - 5 * DAY), "job_id": new_job}])  # fmt: skip

    store = FileStore(own.settings.data_dir)
    ra, rb = (store.folder(t, "/integration/importResults") for t in (ta, tb))
    old_a, new_a = _file(ra, "a.1.result.xml", 31 * DAY), _file(ra, "a.2.result.xml", 2 * DAY)
    old_b = _file(rb, "b.1.result.xml", 45 * DAY)
    processed = _file(store.folder(ta, "/integration/processed"), "kept.xml", 20 * DAY)

    async def purge() -> Any:
        db = own.db()
        try:
            return await run_retention(db, own.settings, NOW)
        finally:
            await db.dispose()

    report = asyncio.run(purge())
    assert report.complete and not report.errors
    assert (report.jobs, report.import_results, report.processed_files) == (3, 2, 0)
    left = {jobs[i]["public_id"] for i in (3, 4, 5)}
    engine = make_sync_engine(own.url)
    try:
        with engine.connect() as conn:
            assert {r.public_id for r in conn.execute(select(job.c.public_id))} == left
            assert sorted(r.job_id or 0 for r in conn.execute(select(file_import.c.job_id))) == [0, new_job]
    finally:
        engine.dispose()
    assert not old_a.exists() and new_a.exists() and not old_b.exists() and processed.exists()
    assert own.count(file_import) == 2  # the imports themselves stay

    again = asyncio.run(purge())
    assert again.total == 0 and again.complete


def test_a_large_backlog_is_purged_in_batches_over_several_runs(own: Own) -> None:
    t = uuid.UUID(make_tenant(own.settings)["tenantId"])
    own.insert(
        idempotency_record, [_idempotency(t, f"k{i}", NOW - timedelta(seconds=i + 1)) for i in range(7)]
    )

    async def first_batch() -> tuple[int, bool]:
        db = own.db()
        try:  # a spent budget: one batch (of 2), then the run stops and says so
            return await purge_idempotency_keys(db, NOW, 2, _Budget(0))
        finally:
            await db.dispose()

    assert asyncio.run(first_batch()) == (2, False)
    assert own.count(idempotency_record) == 5


def test_a_stopping_worker_ends_a_purge_after_its_batch_and_starts_no_other(own: Own) -> None:
    """A shutdown does not wait for the rest of a retention run (up to its 5 s budget): the purge under way ends
    after the batch in hand, a run asked to stop starts no purge, and says it is not complete (the next worker's
    pass goes on)."""
    t = uuid.UUID(make_tenant(own.settings)["tenantId"])
    own.insert(
        idempotency_record, [_idempotency(t, f"k{i}", NOW - timedelta(seconds=i + 1)) for i in range(7)]
    )

    async def purge() -> tuple[tuple[int, bool], Any]:
        db = own.db()
        try:  # no time budget: only the stop ends them
            under_way = await purge_idempotency_keys(db, NOW, 2, _Budget(None, lambda: True))
            return under_way, await run_retention(db, own.settings, NOW, stopping=lambda: True)
        finally:
            await db.dispose()

    under_way, run = asyncio.run(purge())
    assert under_way == (2, False)  # one batch (of 2), then the stop
    assert run.total == 0 and not run.complete and not run.errors
    assert own.count(idempotency_record) == 5


def test_the_worker_housekeeping_runs_retention_on_its_interval(own: Own) -> None:
    t = uuid.UUID(make_tenant(own.settings)["tenantId"])
    clock = FrozenClock(NOW)

    def housekeeping(schedule: bool) -> None:
        async def go() -> None:
            db = own.db()
            try:
                await Worker(
                    db, clock, settings=own.settings, poll_seconds=0.01, schedule=schedule
                ).run_until_idle()
            finally:
                await db.dispose()

        asyncio.run(go())

    own.insert(idempotency_record, [_idempotency(t, "a", NOW - timedelta(minutes=1))])
    housekeeping(schedule=False)  # a worker in a test or inside `promoflow api` does not purge
    assert own.count(idempotency_record) == 1 and last_run(own.settings) is None
    housekeeping(schedule=True)
    assert own.count(idempotency_record) == 0 and last_run(own.settings) == NOW

    own.insert(idempotency_record, [_idempotency(t, "b", NOW - timedelta(minutes=1))])
    clock.advance(timedelta(seconds=own.settings.retention_interval_seconds - 1))
    housekeeping(schedule=True)  # within the interval: not yet
    assert own.count(idempotency_record) == 1
    clock.advance(timedelta(seconds=2))
    housekeeping(schedule=True)
    assert own.count(idempotency_record) == 0


def test_reports_give_the_same_figures_after_the_shown_events_are_purged(own: Own) -> None:
    """The reports count 'shown' from assignment_shown (kept); the purge removes promotion_view rows, so the
    ledger of an old assignment no longer lists its 'shown' events."""
    clock = FrozenClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    settings = own.settings
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        api = Api(client, clock, make_tenant(settings), settings)
        c = new_contact(api)
        p = new_promotion(api)
        a = assign(api, c["id"], p["id"])
        for _ in range(2):
            r = api.get(f"/api/v2/contacts/{c['id']}/promotions", params={"redemptionChannelType": "POS"})
            assert [i["id"] for i in r.json()] == [a["id"]]
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        api = Api(client, clock, api.tenant, settings)
        before = api.get(f"/api/v2/reports/promotions/{p['id']}").json()
        assert (before["shown"], before["impressions"]) == (1, 2)
        events = api.get(f"/api/v2/promotions/codes/{a['id']}/events").json()["events"]
        assert [e["type"] for e in events] == ["assigned", "shown"]
        views = own.count(promotion_view)
        assert views >= 1

        async def purge() -> Any:
            db = own.db()
            try:
                return await run_retention(db, settings, clock.now() + 200 * DAY)
            finally:
                await db.dispose()

        assert asyncio.run(purge()).promotion_views == views
        assert own.count(promotion_view) == 0
        after = api.get(f"/api/v2/reports/promotions/{p['id']}").json()
        assert after == before
        events = api.get(f"/api/v2/promotions/codes/{a['id']}/events").json()["events"]
        assert [e["type"] for e in events] == ["assigned"]
