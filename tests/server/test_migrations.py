"""Migrations and models never drift (Alembic's autogenerate comparison, types included) on SQLite and PostgreSQL;
the migration history has one head; upgrades are idempotent and safe to run from two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from promoflow.server.migrate import alembic_config, drift, is_current, upgrade
from tests.conftest import PG_ADMIN_URL


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
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert is_current(empty_db)
    assert drift(empty_db) == []
    upgrade(empty_db)  # idempotent
    assert drift(empty_db) == []
