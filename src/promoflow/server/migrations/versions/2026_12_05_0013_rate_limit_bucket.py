"""rate_limit_bucket: the per-key token buckets of the shared rate limit (UNLOGGED on PostgreSQL)

Revision ID: 0013
Revises: 0008
Create Date: 2026-12-05

With several API processes (or hosts) on one PostgreSQL database, each key's limit is enforced against one row
per key: a process leases a few tokens at a time with one atomic statement (see ``http.ratelimit``). The rows
are worth no WAL write (after a crash every bucket simply starts full), so on PostgreSQL the table is UNLOGGED.
SQLite gets the table too (one schema for both), but never uses it: one process's own buckets are exact there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import UTCDateTime

revision = "0013"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_bucket",
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_key.id"], name=op.f("fk_rate_limit_bucket_key_id_api_key"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_rate_limit_bucket_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_rate_limit_bucket")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rate_limit_bucket SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("rate_limit_bucket")
