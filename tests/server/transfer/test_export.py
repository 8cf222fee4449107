"""The promotion export (A14): every change once, none missed (late commits, crashes), on demand and on a
schedule."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from promoflow.kit.clock import FrozenClock
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.models import assignment, export_file, tenant
from promoflow.server.tenant.service import context_from_row
from promoflow.server.transfer import export as export_mod
from promoflow.server.transfer.files import FileStore
from promoflow.wire.xml import ExportChange, read_promotion_export
from tests.conftest import START
from tests.server._support import assign, channel, new_contact, new_promotion

OVERLAP = timedelta(hours=1)


def _run_export(api: Any, now: datetime) -> dict[str, Any] | None:
    async def run() -> dict[str, Any] | None:
        db = Database(api.settings.resolved_database_url(), pool_size=2)
        try:
            async with db.read() as conn:
                row = (await conn.execute(select(tenant).where(tenant.c.name == api.tenant["name"]))).first()
            return await export_mod.export_promotions(
                db, FileStore(api.settings.data_dir), context_from_row(row), now, overlap=OVERLAP
            )
        finally:
            await db.dispose()

    return asyncio.run(run())


def _read(api: Any, result: dict[str, Any]) -> dict[str, list[Any]]:
    root = FileStore(api.settings.data_dir).tenant_root(uuid.UUID(api.tenant["tenantId"]))
    out: dict[str, list[Any]] = {c.value: [] for c in ExportChange}
    for item in read_promotion_export(root / result["file"].lstrip("/")):
        value = item.value  # type: ignore[union-attr]
        out[value.change.value].append(value)
    return out


def test_each_change_is_exported_once(api):
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")], external_id="EXP-1")
    a1 = assign(api, c["id"], promo["id"])["id"]
    a2 = assign(api, c["id"], promo["id"])["id"]
    r = api.post(f"/api/v2/promotions/codes/{a1}/redeem", json={"redemptionChannel": "POS"})
    assert r.status_code == 200
    now = START + timedelta(minutes=1)
    first = _run_export(api, now)
    assert first is not None and first["counts"] == {"assigned": 2, "redeemed": 1, "deleted": 0}
    got = _read(api, first)
    assert sorted(p.coupon_id for p in got["assigned"]) == sorted([a1, a2])
    (red,) = got["redeemed"]
    assert red.coupon_id == a1 and red.redeemed_channel == "POS" and red.store_type == "RETAIL"
    assert red.external_promotion_id == "EXP-1" and red.contact_id == c["id"]
    assert _run_export(api, now + timedelta(minutes=1)) is None  # nothing new: no file
    # a new redemption and a deletion are exported next time, and only they
    api.clock.advance(timedelta(minutes=5))
    assert (
        api.post(f"/api/v2/promotions/codes/{a2}/redeem", json={"redemptionChannel": "POS"}).status_code
        == 200
    )
    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        with engine.begin() as conn:
            conn.execute(update(assignment).where(assignment.c.id == uuid.UUID(a1))
                         .values(deleted_at=api.clock.now()))  # fmt: skip
    finally:
        engine.dispose()
    second = _run_export(api, api.clock.now() + timedelta(minutes=1))
    assert second is not None and second["counts"] == {"assigned": 0, "redeemed": 1, "deleted": 1}
    got = _read(api, second)
    assert [p.coupon_id for p in got["redeemed"]] == [a2] and [p.coupon_id for p in got["deleted"]] == [a1]
    assert got["deleted"][0].deleted_date_time is not None
    names = sorted(p.name for p in (FileStore(api.settings.data_dir).tenant_root(
        uuid.UUID(api.tenant["tenantId"])) / "integration/promotionExport").iterdir())  # fmt: skip
    assert len(names) == 2 and all(n.endswith("_promotionexport.xml") for n in names)


def test_a_change_that_commits_late_is_exported_once(api):
    """A transaction stamps its rows with the time it started but may commit after an export ran: the overlap
    window catches it on the next run, and the ledger keeps it from being exported twice."""
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    a1 = assign(api, c["id"], promo["id"])["id"]
    now = START + timedelta(minutes=10)
    assert _run_export(api, now)["counts"]["assigned"] == 1  # type: ignore[index]
    # "late": recorded 5 minutes before the last export's cursor, committed after it
    api.clock.set(now - timedelta(minutes=5))
    late = assign(api, c["id"], promo["id"])["id"]
    nxt = _run_export(api, now + timedelta(minutes=1))
    assert nxt is not None and [p.coupon_id for p in _read(api, nxt)["assigned"]] == [late]
    assert _run_export(api, now + timedelta(minutes=2)) is None
    assert a1 != late


def test_a_crash_after_commit_publishes_the_file_next_time(api, monkeypatch):
    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    assign(api, c["id"], promo["id"])
    real = FileStore.publish
    calls = {"n": 0}

    def crash_once(self, src: Path, dest: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk vanished")
        real(self, src, dest)

    monkeypatch.setattr(FileStore, "publish", crash_once)
    now = START + timedelta(minutes=1)
    with pytest.raises(OSError):
        _run_export(api, now)
    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(export_file.c.status).where(
                    export_file.c.tenant_id == uuid.UUID(api.tenant["tenantId"])
                )
            ).all()
    finally:
        engine.dispose()
    assert [r.status for r in rows] == ["pending"]
    assert _run_export(api, now + timedelta(minutes=1)) is None  # nothing new, but …
    folder = (
        FileStore(api.settings.data_dir).tenant_root(uuid.UUID(api.tenant["tenantId"]))
        / "integration/promotionExport"
    )
    (published,) = list(folder.iterdir())  # … the pending file is now in place, once
    assert len(list(read_promotion_export(published))) == 1


def test_export_promotions_cli(api):
    from promoflow.cli.main import app

    c = new_contact(api)
    promo = new_promotion(api, channels=[channel("POS")])
    assign(api, c["id"], promo["id"])
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMOFLOW_")}
    args = ["export", "promotions", "--tenant", api.tenant["name"], "--json",
            "--database-url", api.settings.resolved_database_url(), "--data-dir", str(api.settings.data_dir)]  # fmt: skip
    result = CliRunner().invoke(app, args, env=unset, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    (out,) = json.loads(result.stdout)
    assert out["tenant"] == api.tenant["name"] and out["counts"]["assigned"] == 1
    again = CliRunner().invoke(app, args, env=unset, catch_exceptions=False)
    assert json.loads(again.stdout)[0]["file"] is None
    missing = CliRunner().invoke(app, [*args[:3], "nobody", *args[4:]], env=unset, catch_exceptions=False)
    assert missing.exit_code == 2 and "TenantNotFound" in missing.stderr


def test_the_schedule_exports_every_interval(tmp_path):
    """On its own database (the schedule looks at every tenant): the first sight of a tenant starts its
    interval, an interval later a worker's housekeeping enqueues its export, and the job writes the file."""
    from promoflow.server.config import Settings
    from promoflow.server.http.app import create_app
    from promoflow.server.migrate import upgrade
    from promoflow.server.worker.runner import Worker
    from tests.conftest import Api, make_tenant

    url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    upgrade(url)
    settings = Settings(database_url=url, data_dir=tmp_path / "data", run_worker=False,
                        default_rate_limit_per_second=0, export_interval_seconds=60)  # fmt: skip
    settings.data_dir.mkdir()
    clock = FrozenClock(START)
    from starlette.testclient import TestClient

    with TestClient(create_app(settings, clock=clock, run_worker=False)) as client:
        api = Api(client, clock, make_tenant(settings), settings)
        c = new_contact(api)
        promo = new_promotion(api, channels=[channel("POS")])
        assign(api, c["id"], promo["id"])

        async def housekeeping_and_jobs() -> int:
            db = Database(url, pool_size=2)
            try:
                worker = Worker(db, clock, settings=settings, poll_seconds=0.01, schedule=True)
                return await worker.run_until_idle()
            finally:
                await db.dispose()

        assert asyncio.run(housekeeping_and_jobs()) == 0  # first sight: the interval starts now
        clock.advance(timedelta(seconds=61))
        assert asyncio.run(housekeeping_and_jobs()) == 1  # due: one export job, run
        clock.advance(timedelta(seconds=10))
        assert asyncio.run(housekeeping_and_jobs()) == 0  # not due again yet
        folder = settings.data_dir / "ftp" / api.tenant["tenantId"] / "integration/promotionExport"
        (f,) = list(folder.iterdir())
        assert [i.value.change for i in read_promotion_export(f)] == [ExportChange.ASSIGNED]  # type: ignore[union-attr]


def test_day_old_partial_files_are_swept(tmp_path):
    store = FileStore(tmp_path)
    tenant_id = uuid.uuid4()
    old = store.new_staging_file(tenant_id)
    old.write_bytes(b"<promotionRedemptions>")
    fresh = store.tmp_dir() / "fresh.result.part"
    fresh.write_bytes(b"x")
    day_ago = datetime.now().timestamp() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    assert store.sweep(export_mod.SWEEP_AFTER_SECONDS) == 1
    assert not old.exists() and fresh.exists()
