"""audit_event: the contact and promotion slices' indexes hold only the entries that name one (issue 15 §3)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05

Every audited write inserts into each of the audit log's eight B-trees, and on SQLite that entry was the largest
single item of a contact write (a contact update without it: 206 µs of CPU against 278, measured A/B). A contact's
own entries name no promotion, and a promotion's, a key's or a user's name no contact: as partial indexes (``IS
NOT NULL``) the two slices skip the entries that cannot be in them. A filter ``promotion_id = …`` or ``contact_id
= …`` implies the condition, so both databases still read the slices from these indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_INDEXES = (("ix_audit_event_contact", "contact_id"), ("ix_audit_event_promotion", "promotion_id"))


def upgrade() -> None:
    for name, column in _INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="audit_event")
        op.create_index(
            name, "audit_event", ["tenant_id", column, "at", "id"], postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for name, column in _INDEXES:
        op.drop_index(name, table_name="audit_event")
        op.create_index(name, "audit_event", ["tenant_id", column, "at", "id"])
