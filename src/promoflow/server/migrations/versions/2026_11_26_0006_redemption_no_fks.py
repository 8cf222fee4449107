"""redemption: no foreign keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Every redemption row is inserted by the statement that has just updated its assignment, in the request's or the
upload's tenant, and tenants and assignments are never deleted; the two per-row foreign-key checks (each locking
the referenced row) cost about 15 % of a redemption file's database time.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FKS = (("fk_redemption_assignment_id_assignment", "assignment", "assignment_id"),
        ("fk_redemption_tenant_id_tenant", "tenant", "tenant_id"))  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        for name, _, _ in _FKS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        for name, table, column in _FKS:
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="CASCADE")
