"""member_number_counter: member numbers counted off the tenant row (issue 16)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

Every contact create used to run ``UPDATE tenant SET member_seq = member_seq + 1`` in its transaction, so all of a
tenant's creates queued behind the tenant's row until commit. The counter moves to its own table (one row per
tenant, created on first use) and is advanced outside the contact's transaction on PostgreSQL, a block of numbers
at a time (see ``contact.numbers``). The tenant's current count is carried over, so no number is handed out twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_number_counter",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_member_number_counter_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_member_number_counter")),
    )
    op.execute(
        "INSERT INTO member_number_counter (tenant_id, next_value) "
        "SELECT id, member_seq FROM tenant WHERE member_seq > 0"
    )
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("member_seq")


def downgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("member_seq", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE tenant SET member_seq = COALESCE("
        "(SELECT next_value FROM member_number_counter c WHERE c.tenant_id = tenant.id), 0)"
    )
    op.drop_table("member_number_counter")
