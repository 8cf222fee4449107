"""The core tables: tenants and keys, contacts, promotions, assignments, redemptions, the assignment ledger,
idempotency records and jobs. Every row carries ``tenant_id``; every query filters by it."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from .base import (
    BigId,
    JsonType,
    NameKey,
    UTCDateTime,
    created_at,
    metadata,
    not_null,
    tenant_column,
    tenant_fk,
    updated_at,
)

tenant = Table(
    "tenant",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("time_zone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("settings", JsonType, nullable=False),
    Column("ftp_password_hash", String(200), nullable=True),
    created_at(),
    updated_at(),
)

api_key = Table(
    "api_key",
    metadata,
    Column("id", Uuid, primary_key=True),
    tenant_fk(),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    # A tenant names its keys ("default", "store-12", "web shop") so it can revoke one without touching the
    # others; a name is unique among the tenant's active keys (a revoked key's name can be used again).
    Column("name", String(100), nullable=False),
    # "api": the Engage API; "admin": also the promoflow key-management extension (/api/v2/promoflow/keys).
    Column("scope", String(20), nullable=False, server_default="api"),
    Column("ip_allowlist", Text, nullable=True),
    created_at(),
    Column("rotated_at", UTCDateTime, nullable=True),
    # Written at most once a minute per key and process (tenant/keys.py `KeyUsage`), never on the request path.
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    CheckConstraint("scope in ('api', 'admin')", name="scope"),
    Index(
        "uq_api_key_active_name",
        "tenant_id",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)


contact = Table(
    "contact",
    metadata,
    Column("id", Uuid, primary_key=True),
    tenant_column(),
    Column("contact_type", String(50), nullable=False),
    Column("attributes", JsonType, nullable=False),
    Column("preferences", JsonType, nullable=False),
    # Look-up columns, kept normalised next to the attributes so every key look-up is one index probe.
    Column("key_value", String(255), nullable=True),
    Column("email", String(255), nullable=True),
    Column("mobile_phone", String(40), nullable=True),
    Column("ssn", String(20), nullable=True),
    Column("member_number", String(64), nullable=True),
    Column("external_id", String(255), nullable=True),
    # The admin UI's name search (migration 0019): "first last" and "last first", folded (lower case, no
    # accents; ``contact.service.name_keys``); a prefix is an index range. Byte order ("C") on PostgreSQL, as
    # SQLite's BINARY, so a prefix range uses the index on both.
    Column("name_key", NameKey, nullable=True),
    Column("name_key_rev", NameKey, nullable=True),
    Column("source", String(100), nullable=True),
    Column("store_external_id", String(255), nullable=True),
    Column("approved", Boolean, nullable=False, server_default="1"),
    created_at(),
    updated_at(),
    UniqueConstraint("tenant_id", "contact_type", "key_value"),
    UniqueConstraint("tenant_id", "member_number"),
    Index("ix_contact_tenant_email", "tenant_id", "email"),
    Index("ix_contact_tenant_mobile", "tenant_id", "mobile_phone"),
    Index("ix_contact_tenant_ssn", "tenant_id", "ssn"),
    # Partial (migration 0019): a tenant that uses no external ids (or names) has no entries, and SQLite's
    # ANALYZE then cannot take the index for one matching every row (all NULL) and scan the table instead.
    Index("ix_contact_tenant_external", "tenant_id", "external_id", **not_null("external_id")),
    Index("ix_contact_tenant_name", "tenant_id", "name_key", **not_null("name_key")),
    Index("ix_contact_tenant_name_rev", "tenant_id", "name_key_rev", **not_null("name_key_rev")),
)

promotion = Table(
    "promotion",
    metadata,
    Column("id", Uuid, primary_key=True),
    tenant_fk(),
    Column("external_id", String(450), nullable=True),
    Column("name", String(450), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("assigned_unit", String(10), nullable=True),
    Column("assigned_amount", Integer, nullable=True),
    Column("heading", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("link", Text, nullable=True),
    Column("image_url", Text, nullable=True),
    Column("channels", JsonType, nullable=False),
    # Bit set of channel types (POS=1, ECOM=2, OTHER=4): the channel filter of the hot fetch is one AND.
    Column("channel_mask", Integer, nullable=False),
    Column("return_policy", String(30), nullable=False, server_default="none"),
    Column("activated_at", UTCDateTime, nullable=True),
    Column("deactivated_at", UTCDateTime, nullable=True),
    created_at(),
    updated_at(),
    UniqueConstraint("tenant_id", "external_id"),
    # The admin UI's promotions list: newest first, paged by keyset (migration 0008).
    Index("ix_promotion_tenant_created", "tenant_id", "created_at", "id"),
)

assignment = Table(
    "assignment",
    metadata,
    Column("id", Uuid, primary_key=True),
    tenant_column(),
    Column("promotion_id", Uuid, ForeignKey("promotion.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Uuid, ForeignKey("contact.id", ondelete="CASCADE"), nullable=False),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_to", UTCDateTime, nullable=True),
    Column("source", String(20), nullable=False),
    # Set for assignments made by a batch (bulk job, file): the same batch never assigns a contact twice.
    Column("batch_ref", String(300), nullable=True),
    Column("external_code_id", String(450), nullable=True),
    Column("redeemed_at", UTCDateTime, nullable=True),
    Column("redeemed_channel", String(10), nullable=True),
    Column("redeemed_store", String(255), nullable=True),
    Column("redeemed_receipt_id", String(255), nullable=True),
    Column("redeemed_via", String(10), nullable=True),
    Column("redemption_count", Integer, nullable=False, server_default="0"),
    Column("reactivation_count", Integer, nullable=False, server_default="0"),
    Column("deleted_at", UTCDateTime, nullable=True),
    created_at(),
    UniqueConstraint("tenant_id", "promotion_id", "contact_id", "batch_ref"),
    # Partial: only the few assignments with an external code have an entry, so a redemption (an UPDATE that
    # cannot stay on its page) inserts into one index fewer. On PostgreSQL the table is kept at fillfactor 90
    # (migration 0005): the UPDATE of a redemption then usually stays on its page (HOT) and touches no index.
    Index(
        "uq_assignment_external_code",
        "tenant_id",
        "external_code_id",
        unique=True,  # fmt: skip
        postgresql_where=text("external_code_id IS NOT NULL"),
        sqlite_where=text("external_code_id IS NOT NULL"),
    ),
    Index("ix_assignment_contact", "contact_id", "tenant_id"),
    Index("ix_assignment_promotion", "promotion_id"),
)

# No foreign keys (migration 0006): every redemption row is inserted by the statement that has just updated its
# assignment (from that UPDATE's RETURNING), in the tenant of the authenticated request or upload, and neither
# tenants nor assignments are ever deleted. The two per-row foreign-key checks cost ~15 % of a redemption file's
# database time.
redemption = Table(
    "redemption",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("assignment_id", Uuid, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("redeemed_at", UTCDateTime, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("store_external_id", String(255), nullable=True),
    Column("unique_receipt_id", String(255), nullable=True),
    Column("via", String(10), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("reactivated_at", UTCDateTime, nullable=True),
    created_at(),
    # One row per redemption of an assignment: a second write of the same redemption cannot exist.
    UniqueConstraint("assignment_id", "seq"),
    Index("ix_redemption_idem", "tenant_id", "idempotency_key"),
)

assignment_event = Table(
    "assignment_event",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    tenant_column(),
    Column("assignment_id", Uuid, ForeignKey("assignment.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("via", String(10), nullable=True),
    Column("channel", String(10), nullable=True),
    Column("store_external_id", String(255), nullable=True),
    Column("unique_receipt_id", String(255), nullable=True),
    Column("detail", JsonType, nullable=True),
    Index("ix_assignment_event_assignment", "assignment_id", "id"),
)

idempotency_record = Table(
    "idempotency_record",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(10), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("locked_until", UTCDateTime, nullable=False),
    created_at(),
    Column("expires_at", UTCDateTime, nullable=False),
    CheckConstraint("state in ('running', 'done')", name="state"),
    Index("ix_idempotency_expires", "expires_at"),
)

job = Table(
    "job",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("public_id", Uuid, nullable=False, unique=True),
    tenant_fk(),
    Column("kind", String(50), nullable=False),
    # Jobs of one queue run one at a time in id order (a tenant's uploads); null queue = no ordering.
    Column("queue", String(100), nullable=True),
    Column("payload", JsonType, nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="5"),
    Column("run_after", UTCDateTime, nullable=False),
    Column("locked_by", String(100), nullable=True),
    Column("heartbeat_at", UTCDateTime, nullable=True),
    Column("progress_done", Integer, nullable=False, server_default="0"),
    Column("progress_total", Integer, nullable=True),
    Column("result", JsonType, nullable=True),
    Column("error", Text, nullable=True),
    created_at(),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed')", name="status"),
    Index("ix_job_claim", "status", "run_after"),
    Index("ix_job_queue", "queue", "status", "id"),
    Index("ix_job_tenant", "tenant_id", "id"),
)
