"""The per-tenant counter of member numbers (issue 16): kept off the tenant row, so that no contact create waits
on a row the whole tenant shares. See `contact.numbers` for how numbers are handed out."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Table, Uuid

from .base import metadata

member_number_counter = Table(
    "member_number_counter",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
    # The highest member number handed out or reserved (by any process) for this tenant.
    Column("next_value", BigInteger, nullable=False),
)
