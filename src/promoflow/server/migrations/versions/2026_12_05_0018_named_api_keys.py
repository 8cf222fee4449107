"""named API keys: a name per key (unique among a tenant's active keys), a scope, last used and rotated times

Revision ID: 0018
Revises: 0019
Create Date: 2026-12-05

A tenant had one key (``label`` "default", or "rotated" after `tenant rotate-key`); now it names several, so a
chain can give each store system its own and revoke one without touching the others. Existing keys keep
working: each gets its label as its name ("default" when it had none; "-2", "-3"… appended where two active keys
of a tenant would share one), scope "api". The ``label`` column goes: ``name`` replaces it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import UTCDateTime

revision = "0018"
down_revision = "0019"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("revoked_at IS NULL")


def _names(rows: list[Any]) -> dict[Any, str]:
    """Each key's name: its label, unique among its tenant's active keys."""
    taken: set[tuple[Any, str]] = set()
    out: dict[Any, str] = {}
    for r in rows:
        base = ((r.label or "").strip() or "default")[:90]
        name = base
        if r.revoked_at is None:
            n = 1
            while (r.tenant_id, name) in taken:
                n += 1
                name = f"{base}-{n}"
            taken.add((r.tenant_id, name))
        out[r.id] = name
    return out


def upgrade() -> None:
    op.add_column("api_key", sa.Column("name", sa.String(length=100), nullable=True))
    op.add_column("api_key", sa.Column("scope", sa.String(length=20), server_default="api", nullable=False))
    op.add_column("api_key", sa.Column("rotated_at", UTCDateTime(), nullable=True))
    op.add_column("api_key", sa.Column("last_used_at", UTCDateTime(), nullable=True))
    bind = op.get_bind()
    keys = sa.table(
        "api_key",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("label", sa.String()),
        sa.column("name", sa.String()),
        sa.column("created_at", UTCDateTime()),
        sa.column("revoked_at", UTCDateTime()),
    )
    rows = bind.execute(
        sa.select(keys.c.id, keys.c.tenant_id, keys.c.label, keys.c.revoked_at).order_by(
            keys.c.tenant_id, keys.c.created_at, keys.c.id
        )
    ).all()
    for key_id, name in _names(list(rows)).items():
        bind.execute(sa.update(keys).where(keys.c.id == key_id).values(name=name))
    with op.batch_alter_table("api_key") as batch:
        batch.alter_column("name", existing_type=sa.String(length=100), nullable=False)
        batch.drop_column("label")
        batch.create_check_constraint("scope", "scope in ('api', 'admin')")
    op.create_index(
        "uq_api_key_active_name",
        "api_key",
        ["tenant_id", "name"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_api_key_active_name", table_name="api_key")
    op.add_column("api_key", sa.Column("label", sa.String(length=100), nullable=True))
    op.execute("UPDATE api_key SET label = name")
    with op.batch_alter_table("api_key") as batch:
        batch.drop_constraint("scope", type_="check")
        batch.drop_column("last_used_at")
        batch.drop_column("rotated_at")
        batch.drop_column("scope")
        batch.drop_column("name")
