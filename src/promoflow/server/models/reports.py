"""Report snapshots: the admin Reports page's figures of one promotion, computed by a worker job from the API's
report (``admin/snapshots.py``), so a page for a promotion of a million assignments renders without counting."""

from __future__ import annotations

from sqlalchemy import Column, PrimaryKeyConstraint, Table, Uuid

from .base import JsonType, UTCDateTime, metadata, tenant_fk

report_snapshot = Table(
    "report_snapshot",
    metadata,
    tenant_fk(),
    Column("promotion_id", Uuid, nullable=False),
    # The time the figures are as of (the job's clock when it read them).
    Column("computed_at", UTCDateTime, nullable=False),
    # {"api": the API report, "redeemed": [[day, channel, store, n]], "receipts": [[day, kind, store, n]],
    #  "assignedByDay": {day: n}}: see admin/snapshots.py.
    Column("payload", JsonType, nullable=False),
    PrimaryKeyConstraint("tenant_id", "promotion_id"),
)

__all__ = ["report_snapshot"]
