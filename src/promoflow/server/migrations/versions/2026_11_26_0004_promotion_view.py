"""'shown' events as one row per fetch; no foreign keys on the fetch-rate tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

The ledger's 'shown' events move from ``assignment_event`` (one row per shown assignment) to ``promotion_view``
(one row per answered fetch, with the ids of the assignments it showed); existing 'shown' events are copied over.
``assignment_shown`` loses its foreign keys: they locked the referenced assignment row for every shown assignment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import promoflow.server.models.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_UTC = promoflow.server.models.base.UTCDateTime
_FKS = ("fk_assignment_shown_assignment_id_assignment", "fk_assignment_shown_promotion_id_promotion",
        "fk_assignment_shown_tenant_id_tenant")  # fmt: skip

_COPY = """
INSERT INTO promotion_view (tenant_id, contact_id, at, last_at, times, store_external_id, assignment_ids)
SELECT e.tenant_id, a.contact_id, e.at, e.at, 1, e.store_external_id, {ids}
FROM assignment_event e JOIN assignment a ON a.id = e.assignment_id
WHERE e.kind = 'shown'
ORDER BY e.id
"""

_BACK = """
INSERT INTO assignment_event (tenant_id, assignment_id, kind, at, store_external_id, detail)
SELECT v.tenant_id, x.value, 'shown', v.at, v.store_external_id, {detail}('count', v.times)
FROM promotion_view v, {ids}
ORDER BY v.id
"""


def upgrade() -> None:
    op.create_table(
        "promotion_view",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("at", _UTC(timezone=True), nullable=False),
        sa.Column("last_at", _UTC(timezone=True), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.Column("store_external_id", sa.String(length=255), nullable=True),
        sa.Column("assignment_ids", promoflow.server.models.base.UuidList(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_view")),
    )
    op.create_index("ix_promotion_view_contact", "promotion_view", ["contact_id", "at"], unique=False)
    bind = op.get_bind()
    # SQLite keeps a Uuid as 32 hex digits, which is also how UuidList writes its JSON items.
    ids = "ARRAY[e.assignment_id]" if bind.dialect.name == "postgresql" else "json_array(e.assignment_id)"
    op.execute(_COPY.format(ids=ids))
    op.execute("DELETE FROM assignment_event WHERE kind = 'shown'")
    with op.batch_alter_table("assignment_shown", schema=None) as batch_op:
        for name in _FKS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("assignment_shown", schema=None) as batch_op:
        for name, column, table in zip(_FKS, ("assignment_id", "promotion_id", "tenant_id"),
                                       ("assignment", "promotion", "tenant"), strict=True):  # fmt: skip
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="CASCADE")
    if op.get_bind().dialect.name == "postgresql":
        back = _BACK.format(ids="unnest(v.assignment_ids) AS x(value)", detail="jsonb_build_object")
    else:
        back = _BACK.format(ids="json_each(v.assignment_ids) AS x", detail="json_object")
    op.execute(back)
    op.drop_index("ix_promotion_view_contact", table_name="promotion_view")
    op.drop_table("promotion_view")
