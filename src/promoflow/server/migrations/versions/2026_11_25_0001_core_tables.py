"""core tables

Revision ID: 0001
Revises:
Create Date: 2026-11-25 19:48:49.842659
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import promoflow.server.models.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("member_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ftp_password_hash", sa.String(length=200), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("name", name=op.f("uq_tenant_name")),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("ip_allowlist", sa.Text(), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_api_key_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )
    op.create_table(
        "contact",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("contact_type", sa.String(length=50), nullable=False),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "preferences",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("key_value", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("mobile_phone", sa.String(length=40), nullable=True),
        sa.Column("ssn", sa.String(length=20), nullable=True),
        sa.Column("member_number", sa.String(length=64), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("store_external_id", sa.String(length=255), nullable=True),
        sa.Column("approved", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_contact_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact")),
        sa.UniqueConstraint(
            "tenant_id", "contact_type", "key_value", name=op.f("uq_contact_tenant_id_contact_type_key_value")
        ),
        sa.UniqueConstraint("tenant_id", "member_number", name=op.f("uq_contact_tenant_id_member_number")),
    )
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.create_index("ix_contact_tenant_email", ["tenant_id", "email"], unique=False)
        batch_op.create_index("ix_contact_tenant_external", ["tenant_id", "external_id"], unique=False)
        batch_op.create_index("ix_contact_tenant_mobile", ["tenant_id", "mobile_phone"], unique=False)
        batch_op.create_index("ix_contact_tenant_ssn", ["tenant_id", "ssn"], unique=False)

    op.create_table(
        "idempotency_record",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("locked_until", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state in ('running', 'done')", name=op.f("ck_idempotency_record_state")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_idempotency_record_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_record")),
    )
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_expires", ["expires_at"], unique=False)

    op.create_table(
        "job",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="5", nullable=False),
        sa.Column("run_after", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("heartbeat_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("progress_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status in ('queued', 'running', 'succeeded', 'failed')", name=op.f("ck_job_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_job_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        sa.UniqueConstraint("public_id", name=op.f("uq_job_public_id")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index("ix_job_claim", ["status", "run_after"], unique=False)
        batch_op.create_index("ix_job_queue", ["queue", "status", "id"], unique=False)
        batch_op.create_index("ix_job_tenant", ["tenant_id", "id"], unique=False)

    op.create_table(
        "promotion",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=450), nullable=True),
        sa.Column("name", sa.String(length=450), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("assigned_unit", sa.String(length=10), nullable=True),
        sa.Column("assigned_amount", sa.Integer(), nullable=True),
        sa.Column("heading", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column(
            "channels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("channel_mask", sa.Integer(), nullable=False),
        sa.Column("return_policy", sa.String(length=30), server_default="none", nullable=False),
        sa.Column("activated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deactivated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_promotion_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion")),
        sa.UniqueConstraint("tenant_id", "external_id", name=op.f("uq_promotion_tenant_id_external_id")),
    )
    op.create_table(
        "assignment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("valid_from", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("batch_ref", sa.String(length=300), nullable=True),
        sa.Column("external_code_id", sa.String(length=450), nullable=True),
        sa.Column("redeemed_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("redeemed_channel", sa.String(length=10), nullable=True),
        sa.Column("redeemed_store", sa.String(length=255), nullable=True),
        sa.Column("redeemed_receipt_id", sa.String(length=255), nullable=True),
        sa.Column("redeemed_via", sa.String(length=10), nullable=True),
        sa.Column("redemption_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reactivation_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("deleted_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_assignment_contact_id_contact"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotion.id"],
            name=op.f("fk_assignment_promotion_id_promotion"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_assignment_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment")),
        sa.UniqueConstraint(
            "tenant_id", "external_code_id", name=op.f("uq_assignment_tenant_id_external_code_id")
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "promotion_id",
            "contact_id",
            "batch_ref",
            name=op.f("uq_assignment_tenant_id_promotion_id_contact_id_batch_ref"),
        ),
    )
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_contact", ["contact_id", "tenant_id"], unique=False)
        batch_op.create_index("ix_assignment_promotion", ["promotion_id"], unique=False)

    op.create_table(
        "assignment_event",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=10), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=True),
        sa.Column("store_external_id", sa.String(length=255), nullable=True),
        sa.Column("unique_receipt_id", sa.String(length=255), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_assignment_event_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_assignment_event_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_event")),
    )
    with op.batch_alter_table("assignment_event", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_event_assignment", ["assignment_id", "id"], unique=False)

    op.create_table(
        "redemption",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("assignment_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("redeemed_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("store_external_id", sa.String(length=255), nullable=True),
        sa.Column("unique_receipt_id", sa.String(length=255), nullable=True),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("reactivated_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", promoflow.server.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_redemption_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_redemption_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption")),
        sa.UniqueConstraint("assignment_id", "seq", name=op.f("uq_redemption_assignment_id_seq")),
    )
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        batch_op.create_index("ix_redemption_idem", ["tenant_id", "idempotency_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        batch_op.drop_index("ix_redemption_idem")

    op.drop_table("redemption")
    with op.batch_alter_table("assignment_event", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_event_assignment")

    op.drop_table("assignment_event")
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_promotion")
        batch_op.drop_index("ix_assignment_contact")

    op.drop_table("assignment")
    op.drop_table("promotion")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tenant")
        batch_op.drop_index("ix_job_queue")
        batch_op.drop_index("ix_job_claim")

    op.drop_table("job")
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_expires")

    op.drop_table("idempotency_record")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_tenant_ssn")
        batch_op.drop_index("ix_contact_tenant_mobile")
        batch_op.drop_index("ix_contact_tenant_external")
        batch_op.drop_index("ix_contact_tenant_email")

    op.drop_table("contact")
    op.drop_table("api_key")
    op.drop_table("tenant")
