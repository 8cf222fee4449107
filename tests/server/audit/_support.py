"""Reading the audit log straight from the database, for the audit tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from promoflow.server.db import make_sync_engine
from promoflow.server.models import audit_event


def entries(db_url: str, tenant_id: str | uuid.UUID, *, action: str | None = None) -> list[dict[str, Any]]:
    """The tenant's entries, oldest first, as dicts (``action`` narrows to one action)."""
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            q = select(audit_event).where(audit_event.c.tenant_id == uuid.UUID(str(tenant_id)))
            if action is not None:
                q = q.where(audit_event.c.action == action)
            return [dict(r._mapping) for r in conn.execute(q.order_by(audit_event.c.id))]
    finally:
        engine.dispose()


def changes_of(api: Any, since: int = 0, **kw: Any) -> list[dict[str, Any]]:
    """The entries of the ``api`` fixture's tenant after the first ``since``."""
    return entries(api.settings.resolved_database_url(), api.tenant["tenantId"], **kw)[since:]
