"""All tables live here, on one MetaData (what Alembic compares against)."""

from . import tables
from .audit import audit_event
from .base import metadata
from .numbers import member_number_counter
from .ratelimit import rate_limit_bucket
from .receipts import (  # noqa: F401
    assignment_shown,
    promotion_view,
    receipt,
    receipt_pending,
    receipt_promotion,
    store,
)
from .reports import report_snapshot
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
from .transfer import (
    export_cursor,
    export_file,
    export_ledger,
    file_import,
    import_content,
    import_record,
)
from .users import admin_invitation, admin_login_attempt, admin_membership, admin_session, admin_user

__all__ = [
    "admin_invitation",
    "admin_login_attempt",
    "admin_membership",
    "admin_session",
    "admin_user",
    "api_key",
    "assignment",
    "assignment_event",
    "audit_event",
    "contact",
    "export_cursor",
    "export_file",
    "export_ledger",
    "file_import",
    "idempotency_record",
    "import_content",
    "import_record",
    "job",
    "member_number_counter",
    "metadata",
    "promotion",
    "rate_limit_bucket",
    "redemption",
    "report_snapshot",
    "tables",
    "tenant",
]
