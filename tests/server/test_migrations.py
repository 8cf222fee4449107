"""Migrations and models never drift (Alembic's autogenerate comparison, types included) on SQLite and PostgreSQL;
the migration history has one head; upgrades are idempotent and safe to run from two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select

from promoflow.server.db import make_sync_engine
from promoflow.server.migrate import alembic_config, downgrade, drift, is_current, upgrade
from promoflow.server.models import (
    assignment,
    assignment_event,
    contact,
    promotion,
    promotion_view,
    redemption,
    tenant,
)
from tests.conftest import PG_ADMIN_URL
from tests.support.children import tied


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"promoflow_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migrated_test_database_matches_the_models(db_url: str) -> None:
    assert is_current(db_url)
    assert drift(db_url) == []


def test_the_history_is_one_line(empty_db: str) -> None:
    heads = ScriptDirectory.from_config(alembic_config(empty_db)).get_heads()
    assert len(heads) == 1, heads


def test_two_processes_upgrading_at_once_both_succeed(empty_db: str, tmp_path: Path) -> None:
    """`promoflow db upgrade` twice at the same moment (as when `serve` and `worker` start together)."""
    assert not is_current(empty_db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMOFLOW_")}
    cmd = [sys.executable, "-m", "promoflow.cli", "db", "upgrade", "--database-url", empty_db,
           "--data-dir", str(tmp_path)]  # fmt: skip
    procs = [
        subprocess.Popen(tied(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert is_current(empty_db)
    assert drift(empty_db) == []
    upgrade(empty_db)  # idempotent
    assert drift(empty_db) == []


def test_upgrades_keep_the_data_and_0004_moves_shown_events(empty_db: str) -> None:
    """Data written at 0003 survives the later migrations — on SQLite 0005 rebuilds the assignment table, which
    must not cascade to the rows that refer to it — and 'shown' ledger events (assignment_event rows before
    0004) become promotion_view rows; a downgrade puts them back."""
    engine = make_sync_engine(empty_db)
    t, c, p, a = (uuid.uuid4() for _ in range(4))
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    try:
        upgrade(empty_db, "0003")
        with engine.begin() as conn:
            conn.execute(insert(tenant).values(id=t, name="old", time_zone="UTC", currency="SEK", settings={},
                                               created_at=at, updated_at=at))  # fmt: skip
            conn.execute(insert(contact).values(id=c, tenant_id=t, contact_type="Member", attributes={},
                                                preferences={}, created_at=at, updated_at=at))  # fmt: skip
            conn.execute(insert(promotion).values(id=p, tenant_id=t, name="P", start_date=at.date(), channels=[],
                                                  channel_mask=0, created_at=at, updated_at=at))  # fmt: skip
            conn.execute(insert(assignment).values(id=a, tenant_id=t, promotion_id=p, contact_id=c, valid_from=at,
                                                   source="api", created_at=at))  # fmt: skip
            conn.execute(insert(assignment_event).values(tenant_id=t, assignment_id=a, kind="shown",
                                                         at=at + timedelta(minutes=5), store_external_id="S1",
                                                         detail={"count": 1}))  # fmt: skip
            conn.execute(insert(assignment_event).values(tenant_id=t, assignment_id=a, kind="reactivated",
                                                         at=at + timedelta(minutes=9)))  # fmt: skip
            conn.execute(insert(redemption).values(id=uuid.uuid4(), tenant_id=t, assignment_id=a, seq=1,
                                                   redeemed_at=at, channel="POS", via="api",
                                                   created_at=at))  # fmt: skip
        upgrade(empty_db)
        with engine.connect() as conn:
            views = conn.execute(select(promotion_view)).all()
            kinds = conn.execute(select(assignment_event.c.kind)).scalars().all()
            kept = conn.execute(select(redemption.c.assignment_id)).scalars().all()
            assert conn.execute(select(assignment.c.id)).scalars().all() == [a]
        assert [
            (v.tenant_id, v.contact_id, v.at, v.times, v.store_external_id, v.assignment_ids) for v in views
        ] == [(t, c, at + timedelta(minutes=5), 1, "S1", [a])]
        assert kinds == ["reactivated"]
        assert kept == [a]
        downgrade(empty_db, "0003")
        with engine.connect() as conn:
            events = conn.execute(select(assignment_event).order_by(assignment_event.c.at)).all()
        assert [(e.kind, e.assignment_id, e.store_external_id) for e in events] == [
            ("shown", a, "S1"),
            ("reactivated", a, None),
        ]
    finally:
        engine.dispose()


def test_a_sqlite_migration_that_leaves_broken_foreign_keys_is_rolled_back(tmp_path: Path) -> None:
    """Migrations run with foreign keys off on SQLite; the keys are checked before the migration commits."""
    url = f"sqlite:///{tmp_path / 'fk.sqlite3'}"
    upgrade(url)
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:  # an orphan, as a migration with a bad copy step would leave behind
            conn.execute(insert(assignment_event).values(tenant_id=uuid.uuid4(), assignment_id=uuid.uuid4(),
                                                         kind="reactivated", at=datetime.now(UTC)))  # fmt: skip
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError, match="broke foreign keys"):
        downgrade(url, "0005")
    assert is_current(url)  # nothing of the failed downgrade was committed
