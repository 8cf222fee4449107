"""FTP uploads, imports and per-record results, export cursors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import promoflow.server.models.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_cursor",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("cursor_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_run_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_export_cursor_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_export_cursor")),
    )
    op.create_table(
        "export_file",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("window_from", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("window_to", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status in ('pending', 'published')", name=op.f("ck_export_file_status")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_export_file_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_file")),
        sa.UniqueConstraint("tenant_id", "seq", name=op.f("uq_export_file_tenant_id_seq")),
    )
    op.create_table(
        "export_ledger",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_export_ledger_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "assignment_id", "seq", name=op.f("pk_export_ledger")),
    )
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_export_ledger_at", ["tenant_id", "at"], unique=False)

    op.create_table(
        "file_import",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_path", sa.String(length=400), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("duplicate_of", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("records_total", sa.Integer(), nullable=True),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("result_file", sa.String(length=400), nullable=True),
        sa.Column("received_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status in ('queued', 'running', 'done', 'rejected', 'duplicate', 'failed')",
            name=op.f("ck_file_import_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_file_import_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_import")),
        sa.UniqueConstraint("public_id", name=op.f("uq_file_import_public_id")),
    )
    with op.batch_alter_table("file_import", schema=None) as batch_op:
        batch_op.create_index("ix_file_import_tenant", ["tenant_id", "id"], unique=False)

    op.create_table(
        "import_content",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("import_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["file_import.id"],
            name=op.f("fk_import_content_import_id_file_import"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_import_content_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "content_hash", name=op.f("pk_import_content")),
    )
    op.create_table(
        "import_record",
        sa.Column("import_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("record_index", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(length=30), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("import_id", "record_index", name=op.f("pk_import_record")),
    )


def downgrade() -> None:
    op.drop_table("import_record")
    op.drop_table("import_content")
    with op.batch_alter_table("file_import", schema=None) as batch_op:
        batch_op.drop_index("ix_file_import_tenant")

    op.drop_table("file_import")
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_export_ledger_at")

    op.drop_table("export_ledger")
    op.drop_table("export_file")
    op.drop_table("export_cursor")
