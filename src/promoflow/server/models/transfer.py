"""File transfer tables: uploaded files and their imports, the verdict of every record, the content hashes
that make a second upload of the same file a duplicate, and the promotion export's cursor, files, ledger."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

from .base import BigId, JsonType, UTCDateTime, created_at, metadata, tenant_fk

IMPORT_STATUSES = ("queued", "running", "done", "rejected", "duplicate", "failed")

# One row per file that reached the server (accepted, refused by name, or a duplicate of an earlier one).
file_import = Table(
    "file_import",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("public_id", Uuid, nullable=False, unique=True),
    tenant_fk(),
    # transactions | contacts | promotions | redemptions (None when the name says nothing usable).
    Column("kind", String(20), nullable=True),
    Column("folder", String(64), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("content_hash", String(64), nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    # Where the accepted bytes wait, relative to the data dir (outside every FTP user's tree).
    Column("stored_path", String(400), nullable=True),
    Column("status", String(12), nullable=False),
    Column("duplicate_of", Uuid, nullable=True),
    # Why the whole file was refused (bad name, not well-formed, DOCTYPE, …); per-record reasons are records.
    Column("reason", Text, nullable=True),
    Column("job_id", BigId, nullable=True),
    Column("records_total", Integer, nullable=True),
    Column("counts", JsonType, nullable=True),
    Column("result_file", String(400), nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint(
        "status in ('queued', 'running', 'done', 'rejected', 'duplicate', 'failed')", name="status"
    ),
    Index("ix_file_import_tenant", "tenant_id", "id"),
)

# The first import of each content per tenant: a second upload of the same bytes is a duplicate.
import_content = Table(
    "import_content",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("content_hash", String(64), primary_key=True),
    Column("import_id", BigId, ForeignKey("file_import.id", ondelete="CASCADE"), nullable=False),
)

# The verdict of each record of an import, written in the same transaction as the record's effect: an import
# resumed after a crash skips the indexes already here, so every record is applied exactly once. No foreign
# keys on purpose: this append-only log takes a million rows per large file, and a per-row FK check costs
# about as much as the row itself (rows go with their import: delete by import_id).
import_record = Table(
    "import_record",
    metadata,
    Column("import_id", BigId, primary_key=True),
    Column("record_index", Integer, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("line", Integer, nullable=True),
    Column("verdict", String(30), nullable=False),
    Column("key", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("detail", JsonType, nullable=True),
)

# Per tenant: changes recorded before ``cursor_at`` minus the overlap window have all been exported.
export_cursor = Table(
    "export_cursor",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("cursor_at", UTCDateTime, nullable=True),
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("last_run_at", UTCDateTime, nullable=True),
)

# Each export file: recorded (status pending) in the transaction that advances the cursor, published (renamed
# into the tenant's promotionExport folder) right after; a crash in between is finished by the next run.
export_file = Table(
    "export_file",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    tenant_fk(),
    Column("seq", Integer, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("status", String(12), nullable=False),
    Column("window_from", UTCDateTime, nullable=True),
    Column("window_to", UTCDateTime, nullable=False),
    Column("counts", JsonType, nullable=False),
    created_at(),
    Column("published_at", UTCDateTime, nullable=True),
    UniqueConstraint("tenant_id", "seq"),
    CheckConstraint("status in ('pending', 'published')", name="status"),
)

# Changes exported inside the overlap window (a transaction may commit after a later one was exported): the
# next run skips these, so no change is exported twice and none is missed. kind: a(ssigned), r(edeemed),
# d(eleted); seq: the redemption's number for r, 0 otherwise.
export_ledger = Table(
    "export_ledger",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(1), primary_key=True),
    Column("assignment_id", Uuid, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_export_ledger_at", "tenant_id", "at"),
)
