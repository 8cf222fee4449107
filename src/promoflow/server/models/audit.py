"""The audit log: one row per change (append-only; see ``server/audit/service.py`` for what is recorded)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, String, Table, Uuid

from .base import BigId, JsonType, UTCDateTime, metadata, not_null, partial, tenant_column

# A contact's own entries (object_type 'contact') name it as their contact too (`audit.entry_values` checks), so
# the contact index finds them by their object as well: the object index leaves them out (migration 0026). An
# object filter asks both (`audit.service._object_arms`).
NOT_A_CONTACTS_OWN = "object_type <> 'contact' OR contact_id IS NULL"

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    tenant_column(),
    Column("at", UTCDateTime, nullable=False),
    Column("actor_kind", String(10), nullable=False),
    Column("actor", String(255), nullable=False),
    # The id behind the actor: the user's, the API key's, the file import's.
    Column("actor_ref", String(64), nullable=True),
    Column("action", String(40), nullable=False),
    Column("object_type", String(30), nullable=False),
    Column("object_id", String(64), nullable=False),
    # The contact and the promotion the change concerns, if any: the contact card's and the promotion page's
    # slices of the log (an assignment concerns both).
    Column("contact_id", Uuid, nullable=True),
    Column("promotion_id", Uuid, nullable=True),
    Column("before", JsonType, nullable=True),
    Column("after", JsonType, nullable=True),
    CheckConstraint("actor_kind in ('user', 'api_key', 'file', 'system')", name="actor_kind"),
    # Every listing is newest first by (at, id) within one tenant, optionally narrowed by one of these.
    Index("ix_audit_event_time", "tenant_id", "at", "id"),
    Index("ix_audit_event_actor", "tenant_id", "actor", "at", "id"),
    Index("ix_audit_event_actor_kind", "tenant_id", "actor_kind", "at", "id"),
    Index("ix_audit_event_action", "tenant_id", "action", "at", "id"),
    Index("ix_audit_event_object", "tenant_id", "object_id", "at", "id", **partial(NOT_A_CONTACTS_OWN)),
    # Only the entries that name one (migration 0025): a contact's own entries name no promotion, a promotion's no
    # contact; a filter on the column implies the condition.
    Index("ix_audit_event_contact", "tenant_id", "contact_id", "at", "id", **not_null("contact_id")),
    Index("ix_audit_event_promotion", "tenant_id", "promotion_id", "at", "id", **not_null("promotion_id")),
)

__all__ = ["NOT_A_CONTACTS_OWN", "audit_event"]
