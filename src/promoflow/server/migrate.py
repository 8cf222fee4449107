"""Schema migrations (Alembic, shipped inside the package so an installed server can upgrade itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url

from .config import OperatorError, describe_database
from .db import is_sqlite, make_sync_engine
from .models import metadata

_HERE = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


@dataclass(frozen=True)
class Migration:
    revision: str
    title: str

    def __str__(self) -> str:
        return f"{self.revision} ({self.title})"


class SchemaError(OperatorError):
    """The database cannot be used as it is: missing, without promoflow's schema, or at another revision."""


class DatabaseMissingError(SchemaError):
    error = "DatabaseMissing"


class SchemaBehindError(SchemaError):
    error = "SchemaBehind"


class SchemaUnknownError(SchemaError):
    error = "SchemaUnknown"


def _scripts(url: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(url))


def migrations(url: str) -> list[Migration]:
    """Every migration this promoflow knows, oldest first."""
    revs = list(_scripts(url).walk_revisions())
    revs.reverse()
    return [Migration(r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "") for r in revs]


def upgrade(url: str, target: str = "head") -> list[Migration]:
    """Bring the database at ``url`` to the newest schema (idempotent; safe to run from several processes on
    PostgreSQL, where Alembic's version table update is transactional). Returns the migrations it applied (none
    when another process applied them first)."""
    known = migrations(url)
    names = {m.revision for m in known}

    def check(before: set[str]) -> None:
        if before - names:
            raise SchemaUnknownError(
                f"{describe_database(url)} is at schema revision {', '.join(sorted(before))}, which this "
                "promoflow does not know (a newer version migrated it): upgrade promoflow"
            )

    before, after = _migrate(url, command.upgrade, target, check)
    if after == before:
        return []
    applied: list[Migration] = []
    started = not before
    for m in known:
        if started:
            applied.append(m)
        if m.revision in before:
            started = True
        if m.revision in after:
            break
    return applied


def current_revisions(url: str) -> list[str]:
    """The schema revision(s) the database is at; [] for a database promoflow has never migrated. On SQLite a
    missing file is not created."""
    if is_sqlite(url) and not _sqlite_exists(url):
        return []
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(_heads(conn))
    finally:
        engine.dispose()


def _heads(conn: Connection) -> set[str]:
    if "alembic_version" not in inspect(conn).get_table_names():
        return set()
    return {str(v) for v in conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()}


def _sqlite_exists(url: str) -> bool:
    path = make_url(url).database
    return not path or path == ":memory:" or Path(path).exists()


def require_current(url: str) -> None:
    """For commands that read and write data but do not change the schema (`tenant …`, `export …`): refuse,
    with one line naming what to do, a database that is missing, empty, or not at this promoflow's schema."""
    where = describe_database(url)
    if is_sqlite(url) and not _sqlite_exists(url):
        raise DatabaseMissingError(
            f"no promoflow database at {make_url(url).database}; run `promoflow db upgrade` or pass --data-dir "
            "(or --database-url)"
        )
    have = set(current_revisions(url))
    if not have:
        raise DatabaseMissingError(
            f"no promoflow schema in {where}; run `promoflow db upgrade` or pass --data-dir (or --database-url)"
        )
    heads = set(_scripts(url).get_heads())
    if have == heads:
        return
    if have - {m.revision for m in migrations(url)}:
        raise SchemaUnknownError(
            f"{where} is at schema revision {', '.join(sorted(have))}, newer than this promoflow knows: "
            "upgrade promoflow"
        )
    raise SchemaBehindError(
        f"{where} is at schema revision {', '.join(sorted(have))}, this promoflow needs "
        f"{', '.join(sorted(heads))}: run `promoflow db upgrade`"
    )


def downgrade(url: str, target: str) -> None:
    """Take the schema back to revision ``target`` (for operators rolling back a release)."""
    _migrate(url, command.downgrade, target)


def _migrate(
    url: str,
    step: Callable[[Config, str], None],
    target: str,
    check: Callable[[set[str]], None] | None = None,
) -> tuple[set[str], set[str]]:
    """Run ``step`` in one transaction (holding the migration lock) and return the revisions before and after."""
    # On SQLite, with foreign keys off: a batch migration rebuilds a table by copy, drop and rename, and the
    # drop must not cascade to the rows that refer to it. migrations/env.py checks the keys before committing.
    engine = make_sync_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727401)")
            before = _heads(conn)
            if check is not None:
                check(before)
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            step(cfg, target)
            after = _heads(conn)
        return before, after
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
    have = set(current_revisions(url))
    return bool(have) and have == set(_scripts(url).get_heads())
