"""admin UI: users, per-tenant memberships, sessions, sign-in attempts; promotions list index

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-05

Users are global (one person may work for several tenants); ``admin_membership`` gives their role per tenant.
Sessions are stored server-side (the cookie holds a random token, the table its SHA-256) so signing out and
disabling a user end them at once. ``ix_promotion_tenant_created`` serves the promotions list's keyset paging.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import UTCDateTime

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_user")),
        sa.UniqueConstraint("email", name=op.f("uq_admin_user_email")),
    )
    op.create_table(
        "admin_membership",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("role in ('viewer', 'marketer', 'admin')", name=op.f("ck_admin_membership_role")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_admin_membership_tenant_id_tenant"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["admin_user.id"],
            name=op.f("fk_admin_membership_user_id_admin_user"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("user_id", "tenant_id", name=op.f("pk_admin_membership")),
    )
    op.create_index("ix_admin_membership_tenant", "admin_membership", ["tenant_id"])
    op.create_table(
        "admin_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_admin_session_tenant_id_tenant"), ondelete="CASCADE"
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["admin_user.id"],
            name=op.f("fk_admin_session_user_id_admin_user"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_session")),
    )
    op.create_index("ix_admin_session_user", "admin_session", ["user_id"])
    op.create_table(
        "admin_login_attempt",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_login_attempt")),
    )
    op.create_index("ix_admin_login_attempt_email", "admin_login_attempt", ["email", "at"])
    op.create_index("ix_admin_login_attempt_address", "admin_login_attempt", ["address", "at"])
    op.create_index("ix_promotion_tenant_created", "promotion", ["tenant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_promotion_tenant_created", table_name="promotion")
    op.drop_table("admin_login_attempt")
    op.drop_table("admin_session")
    op.drop_table("admin_membership")
    op.drop_table("admin_user")
