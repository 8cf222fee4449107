"""audit_event: the append-only audit log of every change (issue 14 §4)

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import BigId, JsonType, UTCDateTime

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=10), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("actor_ref", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("object_type", sa.String(length=30), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("promotion_id", sa.Uuid(), nullable=True),
        sa.Column("before", JsonType, nullable=True),
        sa.Column("after", JsonType, nullable=True),
        sa.CheckConstraint(
            "actor_kind in ('user', 'api_key', 'file', 'system')", name=op.f("ck_audit_event_actor_kind")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_audit_event_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index("ix_audit_event_time", "audit_event", ["tenant_id", "at", "id"])
    op.create_index("ix_audit_event_actor", "audit_event", ["tenant_id", "actor", "at", "id"])
    op.create_index("ix_audit_event_actor_kind", "audit_event", ["tenant_id", "actor_kind", "at", "id"])
    op.create_index("ix_audit_event_action", "audit_event", ["tenant_id", "action", "at", "id"])
    op.create_index("ix_audit_event_object", "audit_event", ["tenant_id", "object_id", "at", "id"])
    op.create_index("ix_audit_event_contact", "audit_event", ["tenant_id", "contact_id", "at", "id"])
    op.create_index("ix_audit_event_promotion", "audit_event", ["tenant_id", "promotion_id", "at", "id"])


def downgrade() -> None:
    op.drop_table("audit_event")
