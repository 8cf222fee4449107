"""Schema migrations (Alembic, shipped inside the package so an installed server can upgrade itself)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from .db import make_sync_engine
from .models import metadata

_HERE = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


def upgrade(url: str, target: str = "head") -> None:
    """Bring the database at ``url`` to the newest schema (idempotent; safe to run from several processes on
    PostgreSQL, where Alembic's version table update is transactional)."""
    _migrate(url, command.upgrade, target)


def downgrade(url: str, target: str) -> None:
    """Take the schema back to revision ``target`` (for operators rolling back a release)."""
    _migrate(url, command.downgrade, target)


def _migrate(url: str, step: Callable[[Config, str], None], target: str) -> None:
    # On SQLite, with foreign keys off: a batch migration rebuilds a table by copy, drop and rename, and the
    # drop must not cascade to the rows that refer to it. migrations/env.py checks the keys before committing.
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727401)")
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            step(cfg, target)
    finally:
        engine.dispose()


def drift(url: str) -> list[object]:
    """Differences between the models and the migrated database (empty when they agree)."""
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return False
            ctx = MigrationContext.configure(conn)
            heads = set(ctx.get_current_heads())
        from alembic.script import ScriptDirectory

        return heads == set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    finally:
        engine.dispose()
