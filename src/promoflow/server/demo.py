"""`serve --demo`: a tenant "demo" with sample contacts and active promotions, created once."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from sqlalchemy import select

from ..kit.clock import SystemClock
from ..wire.engage import MultichannelPromotionCreate
from .config import Settings
from .contact.service import ContactService
from .db import Database
from .models import tenant
from .promotion.assignment import AssignmentService
from .promotion.service import PromotionService
from .tenant.service import context_from_row
from .tenant_setup import create_tenant

_CONTACTS = [
    {"firstName": "Alva", "lastName": "Berg", "email": "alva@example.com", "mobilePhone": "+46701234567"},
    {"firstName": "Nils", "lastName": "Ek", "email": "nils@example.com"},
    {"firstName": "Saga", "lastName": "Lind", "email": "saga@example.com"},
]
_PROMOTIONS: list[dict[str, Any]] = [
    {
        "name": "20% off everything",
        "externalId": "DEMO-20PCT",
        "validity": {"startDate": "2024-01-01", "endDate": "2099-12-31"},
        "presentation": {"heading": "20% off", "description": "Your personal member discount"},
        "redemptionChannels": [
            {"type": "POS", "valueType": "PERCENT", "value": "20", "instruction": "Scan the member card"},
            {"type": "ECOM", "valueType": "PERCENT", "value": "20"},
        ],
    },
    {
        "name": "50 SEK off",
        "externalId": "DEMO-50SEK",
        "validity": {"startDate": "2024-01-01", "assignedValidity": {"unit": "Months", "amount": 6}},
        "presentation": {"heading": "50 kr off your next purchase"},
        "redemptionChannels": [
            {
                "type": "POS",
                "valueType": "MONEY",
                "value": "50",
                "localValues": [{"currency": "EUR", "amount": 5}],
            },
            {"type": "ECOM", "valueType": "EXTERNALOFFER", "value": "DEMO50"},
        ],
    },
]


async def ensure_demo(settings: Settings) -> dict[str, Any]:
    marker = settings.data_dir / "demo-tenant.json"
    if marker.exists():
        return json.loads(marker.read_text())  # type: ignore[no-any-return]
    now = SystemClock().now()
    info = await create_tenant(settings, now, "demo")
    db = Database(settings.resolved_database_url(), pool_size=2)
    try:
        async with db.write() as conn:
            row = (await conn.execute(select(tenant).where(tenant.c.name == "demo"))).one()
            ctx = context_from_row(row)
            contact_ids = []
            for body in _CONTACTS:
                out, _ = await ContactService(ctx, now).create(conn, body, source="demo")
                contact_ids.append(out["id"])
            promos = PromotionService(ctx, now)
            for promo_body in _PROMOTIONS:
                created = await promos.create(conn, MultichannelPromotionCreate.model_validate(promo_body))
                await promos.activate(conn, str(created.id))
                for cid in contact_ids:
                    await AssignmentService(ctx, now).assign(conn, uuid.UUID(cid), created.id)
    finally:
        await db.dispose()
    info["contactIds"] = contact_ids
    marker.write_text(json.dumps(info, indent=2))
    os.chmod(marker, 0o600)
    return info
