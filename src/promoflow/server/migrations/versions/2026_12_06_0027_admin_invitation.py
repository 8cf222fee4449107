"""admin UI: invitations — a role in a tenant offered to an e-mail address, taken up by signing in with its code

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06

A tenant's admin no longer adds an existing account to their tenant directly (that joined it without its owner's
consent and told the admin the address had an account elsewhere): the Users page creates an invitation, with a
code shown once, and it becomes a membership when the person signs in with that code (and, for an existing
account, its own password). Memberships made so far stay as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from promoflow.server.models.base import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_invitation",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("role in ('viewer', 'marketer', 'admin')", name=op.f("ck_admin_invitation_role")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_admin_invitation_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "email", name=op.f("pk_admin_invitation")),
    )
    op.create_index("ix_admin_invitation_email", "admin_invitation", ["email"])


def downgrade() -> None:
    op.drop_index("ix_admin_invitation_email", table_name="admin_invitation")
    op.drop_table("admin_invitation")
