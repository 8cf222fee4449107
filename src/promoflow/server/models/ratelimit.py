"""The shared rate limit's token buckets (PostgreSQL only; SQLite runs one API process, whose buckets are exact).

One row per API key, updated by one atomic statement when a process leases tokens (`http.ratelimit`). On
PostgreSQL the table is UNLOGGED: its rows are not worth a WAL write (after a crash the buckets start full,
which a restart does anyway)."""

from __future__ import annotations

from sqlalchemy import Column, Double, ForeignKey, Integer, Table, Uuid

from .base import UTCDateTime, metadata, tenant_fk

rate_limit_bucket = Table(
    "rate_limit_bucket",
    metadata,
    Column("key_id", Uuid, ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True),
    tenant_fk(),
    Column("tokens", Double, nullable=False),
    # Tokens the last lease took (the statement's answer: UPDATE … RETURNING sees only the new row).
    Column("granted", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
