"""The promotions list's SQL status filter agrees with the one status rule (`promotion.rules.status_of`) for
every status, around every boundary it depends on (start and end of day in the tenant's zone, deactivation)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from promoflow.kit.timeutil import end_of_day, start_of_day
from promoflow.server.admin.gateway import status_condition
from promoflow.server.db import Database
from promoflow.server.models import promotion
from promoflow.server.promotion.rules import status_of
from promoflow.wire.engage import PromotionStatus
from tests.conftest import make_tenant


def test_the_sql_status_filter_matches_status_of(db_url: str, settings: object) -> None:
    tenant = make_tenant(settings)  # type: ignore[arg-type]
    tid = uuid.UUID(tenant["tenantId"])
    tz = ZoneInfo("Europe/Stockholm")
    day = date(2026, 3, 29)  # a DST switch in Stockholm
    nows = [start_of_day(day, tz), end_of_day(day, tz), end_of_day(day, tz) + timedelta(milliseconds=500),
            start_of_day(day, tz) - timedelta(microseconds=1), datetime(2026, 3, 29, 12, tzinfo=UTC)]  # fmt: skip
    days = [day - timedelta(days=1), day, day + timedelta(days=1)]
    activated = [None, datetime(2026, 1, 1, tzinfo=UTC)]
    deactivated = [None, nows[0], nows[1] + timedelta(seconds=1)]
    rows = []
    for start, end, act, deact in itertools.product(days, [None, *days], activated, deactivated):
        if end is not None and end < start:
            continue
        rows.append(dict(id=uuid.uuid4(), tenant_id=tid, name="x", start_date=start, end_date=end, channels=[],
                         channel_mask=0, activated_at=act, deactivated_at=deact if act else None,
                         created_at=nows[0], updated_at=nows[0]))  # fmt: skip

    async def run() -> None:
        db = Database(db_url, pool_size=2)
        try:
            async with db.write() as conn:
                await conn.execute(insert(promotion), rows)
            async with db.read() as conn:
                stored = (await conn.execute(select(promotion).where(promotion.c.tenant_id == tid))).all()
                for now in nows:
                    for status in (PromotionStatus.DRAFT, PromotionStatus.SCHEDULED, PromotionStatus.ACTIVE,
                                   PromotionStatus.ENDED):  # fmt: skip
                        q = select(promotion.c.id).where(
                            promotion.c.tenant_id == tid, status_condition(status, now, tz)
                        )
                        got = set((await conn.execute(q)).scalars())
                        want = {r.id for r in stored if status_of(r, now, tz) is status}
                        assert got == want, (now, status)
        finally:
            await db.dispose()

    asyncio.run(run())
