"""Receipt tables: stores, receipts, receipts waiting for their contact, receipt ↔ assignment links, and the
per-assignment 'shown' summary the reports read. Every row carries ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)

from .base import (
    BigId,
    DecimalType,
    JsonType,
    UTCDateTime,
    UuidList,
    created_at,
    metadata,
    tenant_column,
    tenant_fk,
    updated_at,
)

# Registered on first sight (type RETAIL until told otherwise); the type is a redeem-by-receipt's channel.
store = Table(
    "store",
    metadata,
    tenant_fk(),
    Column("external_id", String(255), nullable=False),
    Column("name", String(255), nullable=True),
    Column("type", String(10), nullable=False, server_default="RETAIL"),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("details", JsonType, nullable=True),
    created_at(),
    updated_at(),
    PrimaryKeyConstraint("tenant_id", "external_id"),
)

# One row per uniqueReceiptId and tenant (the unique constraint is the dedupe, safe under concurrency).
# Totals are columns (exact decimals); the rest of the receipt as sent lives in ``body``.
receipt = Table(
    "receipt",
    metadata,
    Column("id", Uuid, primary_key=True),
    tenant_column(),
    Column("unique_receipt_id", String(255), nullable=False),
    # Null while the receipt waits for its contact (status 'pending'), then the matched contact.
    Column("contact_id", Uuid, ForeignKey("contact.id", ondelete="SET NULL"), nullable=True),
    Column("status", String(10), nullable=False),
    Column("match_key_type", String(30), nullable=False),
    Column("match_key", String(255), nullable=False),
    Column("contact_type", String(50), nullable=True),
    Column("receipt_number", String(255), nullable=True),
    Column("created_date", UTCDateTime, nullable=False),
    # Engage keeps the sale's local time: the offset it was sent with, in minutes east of UTC.
    Column("created_offset", Integer, nullable=False),
    Column("store_external_id", String(255), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_gross_price", DecimalType, nullable=False),
    Column("total_discount", DecimalType, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("original_unique_receipt_id", String(255), nullable=True),
    Column("body", JsonType, nullable=False),
    Column("warnings", JsonType, nullable=True),
    Column("via", String(10), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("matched_at", UTCDateTime, nullable=True),
    UniqueConstraint("tenant_id", "unique_receipt_id"),
    Index("ix_receipt_contact", "tenant_id", "contact_id", "created_date"),
    Index("ix_receipt_original", "tenant_id", "original_unique_receipt_id"),
)

# Receipts whose contact is not known yet, by the (normalised) key that will match it; rows leave on match.
receipt_pending = Table(
    "receipt_pending",
    metadata,
    Column("receipt_id", Uuid, ForeignKey("receipt.id", ondelete="CASCADE"), primary_key=True),
    tenant_column(),
    Column("key_type", String(30), nullable=False),
    Column("key_value", String(255), nullable=False),
    Column("contact_type", String(50), nullable=True),
    created_at(),
    Index("ix_receipt_pending_key", "tenant_id", "key_type", "key_value"),
)

# A receipt tied to an assignment: 'redeemed' (the receipt redeemed it), 'linked' (it was already redeemed),
# 'returned' (a RETURN receipt of a sale linked to it). The sale's figures are copied here so a promotion's
# report reads one index range, not a join over all receipts.
receipt_promotion = Table(
    "receipt_promotion",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    tenant_column(),
    Column("receipt_id", Uuid, ForeignKey("receipt.id", ondelete="CASCADE"), nullable=False),
    Column("assignment_id", Uuid, ForeignKey("assignment.id", ondelete="CASCADE"), nullable=False),
    Column("promotion_id", Uuid, ForeignKey("promotion.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(10), nullable=False),
    # Which redemption of the assignment the sale is tied to (a return reactivates only that one).
    Column("redemption_seq", Integer, nullable=True),
    Column("unique_receipt_id", String(255), nullable=False),
    Column("store_external_id", String(255), nullable=False),
    Column("created_date", UTCDateTime, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_gross_price", DecimalType, nullable=False),
    Column("total_discount", DecimalType, nullable=False),
    # False on a second link of the same receipt to the same promotion: reports count each receipt once.
    Column("counted", Boolean, nullable=False),
    Column("linked_at", UTCDateTime, nullable=False),
    UniqueConstraint("receipt_id", "assignment_id"),
    Index("ix_receipt_promotion_assignment", "assignment_id"),
    Index("ix_receipt_promotion_promotion", "promotion_id", "created_date"),
)

# The ledger's 'shown' events: one row per answered fetch (repeats of the same answer in one store within a
# write batch become one row with a count), holding the ids of the assignments the answer showed. The ledger
# reads an assignment's 'shown' events from its contact's rows.
#
# This table and assignment_shown are written at fetch rate, so they have no foreign keys: a foreign-key check
# locks the referenced assignment row (FOR KEY SHARE), which dirties its page and writes WAL for every shown
# assignment. Nothing here can dangle: tenants, contacts and assignments are never deleted (an assignment's
# deletion is a mark), and a promotion can only be deleted while it has no assignments.
promotion_view = Table(
    "promotion_view",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("contact_id", Uuid, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    Column("times", Integer, nullable=False),
    Column("store_external_id", String(255), nullable=True),
    Column("assignment_ids", UuidList, nullable=False),
    Index("ix_promotion_view_contact", "contact_id", "at"),
)

# One row per assignment ever shown, upserted with the views: the reports count shown assignments here.
assignment_shown = Table(
    "assignment_shown",
    metadata,
    Column("assignment_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("promotion_id", Uuid, nullable=False),
    Column("first_shown_at", UTCDateTime, nullable=False),
    Column("last_shown_at", UTCDateTime, nullable=False),
    Column("times", Integer, nullable=False),
    Index("ix_assignment_shown_promotion", "promotion_id", "first_shown_at"),
)
