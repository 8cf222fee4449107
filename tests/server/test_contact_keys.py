"""A receipt file's batch looks its contacts up at once (`ContactService.find_many_by_key`): for every key it must
find what `find_by_key` finds for that key alone, and leave out the keys `find_by_key` refuses. Both databases."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from promoflow.server.contact.service import ContactService
from promoflow.server.db import Database
from promoflow.server.exceptions import PromoflowError
from promoflow.server.models import tenant
from promoflow.server.tenant.service import TenantContext, TenantService, context_from_row

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def _tenant(conn: Any) -> TenantContext:
    new = await TenantService(NOW).create(conn, f"keys-{uuid.uuid4().hex[:12]}")
    return context_from_row((await conn.execute(select(tenant).where(tenant.c.id == new.tenant_id))).one())


def test_a_batch_finds_what_each_key_finds_alone(db_url: str) -> None:
    async def go() -> None:
        db = Database(db_url, pool_size=2)
        try:
            async with db.write() as conn:
                ctx, other = await _tenant(conn), await _tenant(conn)
            async with db.write() as conn:  # (member numbers are handed out on a connection of their own)
                made: dict[str, str] = {}
                # Two contacts share a mobile number (not a key): the first by creation is the one found.
                for n, (name, body) in enumerate(
                    {
                        "first": {"email": "first@example.com", "mobilePhone": "+46701234567"},
                        "second": {"email": "second@example.com", "mobilePhone": "+46701234567"},
                        "member": {
                            "contactType": "Member",
                            "email": "member@example.com",
                            "memberNumber": "M-77",
                        },
                    }.items()
                ):
                    row, _ = await ContactService(ctx, NOW + timedelta(seconds=n)).create(conn, body)
                    made[name] = row["id"]
                elsewhere, _ = await ContactService(other, NOW).create(conn, {"email": "first@example.com"})
                keys = [
                    ("email", " First@Example.COM ", None),
                    ("email", "second@example.com", "Contact"),
                    ("email", "second@example.com", "Member"),  # of another contact type
                    ("email", "nobody@example.com", None),
                    ("mobilePhone", "+46701234567", None),
                    ("memberNumber", "M-77", None),
                    ("memberNumberWithCardNumberAsFallback", "M-77", "Member"),
                    ("contactId", made["second"], None),
                    ("contactId", made["second"].upper(), None),
                    ("contactId", elsewhere["id"], None),  # another tenant's
                    ("contactId", str(uuid.uuid4()), None),
                    ("contactId", "not a guid", None),  # refused: left out
                    ("shoeSize", "44", None),  # refused: left out
                ]
                service = ContactService(ctx, NOW)
                alone: dict[tuple[str, str, str | None], uuid.UUID | None] = {}
                for key in keys:
                    with contextlib.suppress(PromoflowError):  # refused: no answer of its own
                        alone[key] = await service.find_by_key(conn, *key)
                found = await service.find_many_by_key(conn, keys)
            assert found == alone
            assert alone[keys[0]] == alone[keys[4]] == uuid.UUID(made["first"])
            assert alone[keys[5]] == uuid.UUID(made["member"]) and alone[keys[3]] is None
            assert alone[keys[9]] is None and keys[11] not in found and keys[12] not in found
        finally:
            await db.dispose()

    asyncio.run(go())
