"""assignment: a partial unique index on external_code_id; fillfactor 90 on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

A redemption updates its assignment row. When the new row version cannot stay on its page, PostgreSQL inserts
it into every index of the table; most assignments have no external code, so that unique index becomes partial
(no entry for them). Free space on every page (fillfactor 90, for pages written from now on) lets the update
usually stay on its page (a HOT update), which touches no index at all.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHERE = "external_code_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_constraint("uq_assignment_tenant_id_external_code_id", type_="unique")
        batch_op.create_index("uq_assignment_external_code", ["tenant_id", "external_code_id"], unique=True,
                              postgresql_where=text(_WHERE), sqlite_where=text(_WHERE))  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE assignment SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE assignment RESET (fillfactor)")
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_index("uq_assignment_external_code")
        batch_op.create_unique_constraint(
            "uq_assignment_tenant_id_external_code_id", ["tenant_id", "external_code_id"]
        )
