"""receipts, stores, receipt-promotion links

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Tables of the receipts feature: ``store``, ``receipt`` (one row per tenant and uniqueReceiptId),
``receipt_pending`` (receipts waiting for their contact), ``receipt_promotion`` (receipt ↔ assignment links,
with the sale's figures for the reports) and ``assignment_shown`` (per-assignment summary of 'shown' events).
Only CREATE TABLE / CREATE INDEX, so the same operations run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import promoflow.server.models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UTC = promoflow.server.models.base.UTCDateTime
_DEC = promoflow.server.models.base.DecimalType


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "store",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=10), server_default="RETAIL", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("details", _json(), nullable=True),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("updated_at", _UTC(timezone=True), nullable=False),
        _tenant_fk("store"),
        sa.PrimaryKeyConstraint("tenant_id", "external_id", name=op.f("pk_store")),
    )
    op.create_table(
        "receipt",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("unique_receipt_id", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("match_key_type", sa.String(length=30), nullable=False),
        sa.Column("match_key", sa.String(length=255), nullable=False),
        sa.Column("contact_type", sa.String(length=50), nullable=True),
        sa.Column("receipt_number", sa.String(length=255), nullable=True),
        sa.Column("created_date", _UTC(timezone=True), nullable=False),
        sa.Column("created_offset", sa.Integer(), nullable=False),
        sa.Column("store_external_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_gross_price", _DEC(precision=18, scale=4), nullable=False),
        sa.Column("total_discount", _DEC(precision=18, scale=4), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("original_unique_receipt_id", sa.String(length=255), nullable=True),
        sa.Column("body", _json(), nullable=False),
        sa.Column("warnings", _json(), nullable=True),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("received_at", _UTC(timezone=True), nullable=False),
        sa.Column("matched_at", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_receipt_contact_id_contact"), ondelete="SET NULL"
        ),
        _tenant_fk("receipt"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt")),
        sa.UniqueConstraint(
            "tenant_id", "unique_receipt_id", name=op.f("uq_receipt_tenant_id_unique_receipt_id")
        ),
    )
    op.create_index(
        "ix_receipt_contact", "receipt", ["tenant_id", "contact_id", "created_date"], unique=False
    )
    op.create_index(
        "ix_receipt_original", "receipt", ["tenant_id", "original_unique_receipt_id"], unique=False
    )
    op.create_table(
        "receipt_pending",
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key_type", sa.String(length=30), nullable=False),
        sa.Column("key_value", sa.String(length=255), nullable=False),
        sa.Column("contact_type", sa.String(length=50), nullable=True),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["receipt.id"],
            name=op.f("fk_receipt_pending_receipt_id_receipt"),
            ondelete="CASCADE",
        ),
        _tenant_fk("receipt_pending"),
        sa.PrimaryKeyConstraint("receipt_id", name=op.f("pk_receipt_pending")),
    )
    op.create_index(
        "ix_receipt_pending_key", "receipt_pending", ["tenant_id", "key_type", "key_value"], unique=False
    )
    op.create_table(
        "receipt_promotion",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("redemption_seq", sa.Integer(), nullable=True),
        sa.Column("unique_receipt_id", sa.String(length=255), nullable=False),
        sa.Column("store_external_id", sa.String(length=255), nullable=False),
        sa.Column("created_date", _UTC(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_gross_price", _DEC(precision=18, scale=4), nullable=False),
        sa.Column("total_discount", _DEC(precision=18, scale=4), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("linked_at", _UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_receipt_promotion_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotion.id"],
            name=op.f("fk_receipt_promotion_promotion_id_promotion"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["receipt.id"],
            name=op.f("fk_receipt_promotion_receipt_id_receipt"),
            ondelete="CASCADE",
        ),
        _tenant_fk("receipt_promotion"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt_promotion")),
        sa.UniqueConstraint(
            "receipt_id", "assignment_id", name=op.f("uq_receipt_promotion_receipt_id_assignment_id")
        ),
    )
    op.create_index("ix_receipt_promotion_assignment", "receipt_promotion", ["assignment_id"], unique=False)
    op.create_index(
        "ix_receipt_promotion_promotion", "receipt_promotion", ["promotion_id", "created_date"], unique=False
    )
    op.create_table(
        "assignment_shown",
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("first_shown_at", _UTC(timezone=True), nullable=False),
        sa.Column("last_shown_at", _UTC(timezone=True), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_assignment_shown_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotion.id"],
            name=op.f("fk_assignment_shown_promotion_id_promotion"),
            ondelete="CASCADE",
        ),
        _tenant_fk("assignment_shown"),
        sa.PrimaryKeyConstraint("assignment_id", name=op.f("pk_assignment_shown")),
    )
    op.create_index(
        "ix_assignment_shown_promotion", "assignment_shown", ["promotion_id", "first_shown_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_assignment_shown_promotion", table_name="assignment_shown")
    op.drop_table("assignment_shown")
    op.drop_index("ix_receipt_promotion_promotion", table_name="receipt_promotion")
    op.drop_index("ix_receipt_promotion_assignment", table_name="receipt_promotion")
    op.drop_table("receipt_promotion")
    op.drop_index("ix_receipt_pending_key", table_name="receipt_pending")
    op.drop_table("receipt_pending")
    op.drop_index("ix_receipt_original", table_name="receipt")
    op.drop_index("ix_receipt_contact", table_name="receipt")
    op.drop_table("receipt")
    op.drop_table("store")
