"""contact name search: folded "first last" / "last first" columns with an index each; external id index partial

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-05

The admin UI's contact search by name was a scan of every contact's JSON attributes (~700 ms on 100,000
contacts). ``name_key`` ("first last") and ``name_key_rev`` ("last first"), folded by
``contact.service.name_keys`` (lower case, no accents, single spaces), make a name prefix one index range. On
PostgreSQL the columns compare in byte order (COLLATE "C"), as SQLite's BINARY does, so the range is the same
on both and uses the index whatever the database's collation. Existing contacts are filled in batches, in
Python (SQLite's lower() folds ASCII only), by a frozen copy of the service's ``name_keys``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import JsonType, NameKey

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None

_BATCH = 5_000
# Partial indexes: a tenant with no external ids (or no names) has no entries, and SQLite's ANALYZE cannot then
# judge the index useless (one value, NULL, for every row) and have the probe scan the table (~130 ms on
# 100,000 contacts, measured in bench/admin_bench.py).
_PARTIAL = (
    ("ix_contact_tenant_external", "external_id"),
    ("ix_contact_tenant_name", "name_key"),
    ("ix_contact_tenant_name_rev", "name_key_rev"),
)


def _not_null(column: str) -> dict[str, Any]:
    where = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def name_keys(attrs: dict[str, Any]) -> dict[str, str | None]:
    """``contact.service.name_keys`` as of this revision."""
    first, last = _fold(str(attrs.get("firstName") or "")), _fold(str(attrs.get("lastName") or ""))
    if not first and not last:
        return {"name_key": None, "name_key_rev": None}
    return {"name_key": f"{first} {last}".strip()[:255], "name_key_rev": f"{last} {first}".strip()[:255]}


def upgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", NameKey, nullable=True))
        batch_op.add_column(sa.Column("name_key_rev", NameKey, nullable=True))
    bind = op.get_bind()
    contact = sa.table(
        "contact",
        sa.column("id", sa.Uuid()),
        sa.column("attributes", JsonType),
        sa.column("name_key", NameKey),
        sa.column("name_key_rev", NameKey),
    )
    named = sa.or_(
        contact.c.attributes["firstName"].as_string().is_not(None),
        contact.c.attributes["lastName"].as_string().is_not(None),
    )
    last = None
    while True:
        q = sa.select(contact.c.id, contact.c.attributes).where(named).order_by(contact.c.id).limit(_BATCH)
        if last is not None:
            q = q.where(contact.c.id > last)
        rows = bind.execute(q).all()
        if not rows:
            break
        updates = [
            {"b_id": r.id, **{f"b_{k}": v for k, v in name_keys(r.attributes or {}).items()}} for r in rows
        ]
        bind.execute(
            contact.update()
            .where(contact.c.id == sa.bindparam("b_id"))
            .values(name_key=sa.bindparam("b_name_key"), name_key_rev=sa.bindparam("b_name_key_rev")),
            updates,
        )
        last = rows[-1].id
    for name, column in _PARTIAL:
        if column == "external_id":
            op.drop_index(name, table_name="contact")
        op.create_index(name, "contact", ["tenant_id", column], **_not_null(column))


def downgrade() -> None:
    for name, _ in _PARTIAL:
        op.drop_index(name, table_name="contact")
    op.create_index("ix_contact_tenant_external", "contact", ["tenant_id", "external_id"])
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("name_key_rev")
        batch_op.drop_column("name_key")
