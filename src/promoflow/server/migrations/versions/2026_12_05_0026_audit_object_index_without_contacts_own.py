"""audit_event: the object index leaves out a contact's own entries, which the contact index holds (issue 15 §3)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05

A contact's own entries (``contact.create``, ``contact.update``: object_type 'contact') name the contact as both
their object and their contact, so the object index and the contact index each held a copy keyed by the contact's
id. Those two are the entry's only indexes keyed at random (the others grow at their right edge), so each costs
every contact write a page of its own, in the statement, the commit and the checkpoint: on SQLite the entry's
insert measured 44 µs with both and 27 µs with one (200,000 entries, groups of 20). The object index now holds
every other entry (``object_type <> 'contact' OR contact_id IS NULL``); an object filter asks it and the contact
index (`audit.service._object_arms`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_NAME, _COLUMNS = "ix_audit_event_object", ["tenant_id", "object_id", "at", "id"]
# (As models.audit.NOT_A_CONTACTS_OWN at this revision; a migration keeps its own copy.)
_WHERE = "object_type <> 'contact' OR contact_id IS NULL"


def upgrade() -> None:
    op.drop_index(_NAME, table_name="audit_event")
    where = sa.text(_WHERE)
    op.create_index(_NAME, "audit_event", _COLUMNS, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="audit_event")
    op.create_index(_NAME, "audit_event", _COLUMNS)
