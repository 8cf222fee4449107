"""All tables live here, on one MetaData (what Alembic compares against)."""

from . import tables
from .base import metadata
from .tables import (
    api_key,
    assignment,
    assignment_event,
    contact,
    idempotency_record,
    job,
    promotion,
    redemption,
    tenant,
)

__all__ = [
    "api_key",
    "assignment",
    "assignment_event",
    "contact",
    "idempotency_record",
    "job",
    "metadata",
    "promotion",
    "redemption",
    "tables",
    "tenant",
]
