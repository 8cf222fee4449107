"""Helpers for the server tests: building blocks of the Engage flow through the API, the A3 error check, and a
snapshot of everything a tenant owns in the database (to prove that a refused request changed nothing)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from promoflow.server.db import make_sync_engine
from promoflow.server.models import (
    api_key,
    assignment,
    assignment_event,
    audit_event,
    contact,
    idempotency_record,
    job,
    promotion,
    redemption,
    tenant,
)

GUID_TEXT = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ERROR_KEYS = {"statusCode", "errorCode", "message"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The A3 body: exactly ``{statusCode, errorCode, message}``, as JSON, with the HTTP status repeated."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["statusCode"] == status
    assert body["errorCode"] == code, body
    assert isinstance(body["message"], str) and body["message"].strip()
    return dict(body)


def channel(
    type_: str = "POS", value_type: str = "PERCENT", value: str | None = "20", **extra: Any
) -> dict[str, Any]:
    return {"type": type_, "valueType": value_type, "value": value, **extra}


def promotion_body(
    *,
    name: str | None = None,
    start: str = "2026-01-01",
    end: str | None = "2026-12-31",
    channels: list[dict[str, Any]] | None = None,
    assigned: dict[str, Any] | None = None,
    external_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    validity: dict[str, Any] = {"startDate": start}
    if end is not None:
        validity["endDate"] = end
    if assigned is not None:
        validity["assignedValidity"] = assigned
    body: dict[str, Any] = {
        "name": name or f"promo {uuid.uuid4().hex[:8]}",
        "validity": validity,
        "redemptionChannels": channels if channels is not None else [channel()],
        **extra,
    }
    if external_id is not None:
        body["externalId"] = external_id
    return body


def new_contact(client: Any, headers: dict[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
    """A Member with a unique e-mail unless one is given; ``client``: the ``api`` fixture or an httpx client."""
    attrs.setdefault("email", f"c-{uuid.uuid4().hex[:10]}@example.com")
    kw: dict[str, Any] = {"json": attrs}
    if headers is not None:
        kw["headers"] = headers
    r = client.post("/api/v2/contacts", **kw)
    assert r.status_code == 201, r.text
    return dict(r.json())


def new_promotion(
    client: Any, headers: dict[str, str] | None = None, *, activate: bool = True, **body_kw: Any
) -> dict[str, Any]:
    """A promotion (by default Active over 2026, one POS PERCENT channel)."""
    kw: dict[str, Any] = {"json": promotion_body(**body_kw)}
    if headers is not None:
        kw["headers"] = headers
    r = client.post("/api/v2/promotions/multichannels", **kw)
    assert r.status_code == 201, r.text
    promo = dict(r.json())
    if activate:
        kw = {} if headers is None else {"headers": headers}
        r = client.post(f"/api/v2/promotions/multichannels/{promo['id']}/activate", **kw)
        assert r.status_code == 200, r.text
        promo = dict(r.json())
    return promo


def assign(
    client: Any, contact_id: str, promotion_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    kw: dict[str, Any] = {} if headers is None else {"headers": headers}
    r = client.post(f"/api/v2/contacts/{contact_id}/promotions/{promotion_id}/assign", **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


_TENANT_TABLES = (
    contact,
    promotion,
    assignment,
    redemption,
    assignment_event,
    idempotency_record,
    job,
    api_key,
    audit_event,
)


# Bookkeeping that any authenticated request may touch, refused or not: when a key was last used (written in the
# background at most once a minute per key).
_BOOKKEEPING = {"api_key": {"last_used_at"}}


def columns(table: Any) -> list[Any]:
    """A table's columns but its bookkeeping ones (`_BOOKKEEPING`)."""
    return [c for c in table.c if c.name not in _BOOKKEEPING.get(table.name, ())]


def snapshot(db_url: str, tenant_id: str | uuid.UUID) -> dict[str, list[str]]:
    """Every row the tenant owns, table by table (rows as sorted reprs), read straight from the database; the
    bookkeeping columns (`_BOOKKEEPING`) left out."""
    tid = uuid.UUID(str(tenant_id))
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            out = {
                t.name: sorted(
                    repr(tuple(row)) for row in conn.execute(select(*columns(t)).where(t.c.tenant_id == tid))
                )
                for t in _TENANT_TABLES
            }
            out["tenant"] = [repr(tuple(r)) for r in conn.execute(select(tenant).where(tenant.c.id == tid))]
            return out
    finally:
        engine.dispose()


def count_rows(db_url: str, table: Any, *where: Any) -> int:
    from sqlalchemy import func

    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)
    finally:
        engine.dispose()
