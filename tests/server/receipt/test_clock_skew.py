"""Issue 11 §5: instants from a client's clock (a receipt's createdDate, a redeem's redeemedOn) are compared at the
precision they were sent, and may be the tenant's clock skew (`clockSkewSeconds`, default 300) earlier than the
assignment became valid. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promoflow.server.db import Database
from promoflow.server.tenant.errors import InvalidSettingError
from promoflow.server.tenant.service import TenantService
from tests.server.receipt.conftest import Flow, receipt_body

EMAIL = "skew@example.com"


def _set(flow: Flow, changes: dict[str, Any]) -> None:
    async def run() -> None:
        db = Database(flow.api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(conn, flow.api.tenant["name"], changes)
        finally:
            await db.dispose()

    asyncio.run(run())
    flow.api.client.app.state.promoflow.key_cache.clear()  # type: ignore[attr-defined]  # (else seen within 5 s)


def test_a_receipt_in_the_same_second_as_the_assignment_redeems_it(flow: Flow) -> None:
    _set(flow, {"clockSkewSeconds": 0})  # only the precision is at work here
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS")
    flow.api.clock.advance(timedelta(milliseconds=400))  # assigned at 13:00:00.400, sold at "13:00:00"
    aid = flow.assign(cid, pid)
    body = receipt_body(key=EMAIL, used=[{"couponId": aid}], created="2026-03-10T13:00:00+01:00")
    assert flow.send(body).json()["warnings"] == []
    assert flow.item_of(cid, aid)["redeemed"] is True
    # A redeemedOn sent with milliseconds is compared as sent.
    other = flow.assign(cid, pid)
    early = {"redemptionChannel": "POS", "redeemedOn": "2026-03-10T13:00:00.100+01:00"}
    r = flow.api.post(f"/api/v2/promotions/codes/{other}/redeem", json=early)
    assert r.status_code == 409 and r.json()["errorCode"] == "PromotionNotYetValid"
    same_second = {"redemptionChannel": "POS", "redeemedOn": "2026-03-10T13:00:00+01:00"}
    assert flow.api.post(f"/api/v2/promotions/codes/{other}/redeem", json=same_second).status_code == 200


def test_a_till_clock_behind_the_servers_is_tolerated_up_to_the_tenants_skew(flow: Flow) -> None:
    cid = flow.contact(EMAIL)
    pid = flow.promotion("POS")
    aids = [flow.assign(cid, pid) for _ in range(3)]  # at 13:00:00
    flow.api.clock.advance(timedelta(minutes=10))
    within = receipt_body(key=EMAIL, used=[{"couponId": aids[0]}], created="2026-03-10T12:57:00+01:00")
    assert flow.send(within).json()["warnings"] == []
    assert flow.item_of(cid, aids[0])["redeemedOn"] == "2026-03-10T12:57:00+01:00"
    beyond = receipt_body(key=EMAIL, used=[{"couponId": aids[1]}], created="2026-03-10T12:54:00+01:00")
    [warning] = flow.send(beyond).json()["warnings"]
    assert "PromotionNotYetValid" in warning
    r = flow.api.post(f"/api/v3/promotion-assignments/{aids[1]}/redeem",
                      json={"redemptionChannel": "POS", "redeemedOn": "2026-03-10T12:56:00+01:00"})  # fmt: skip
    assert r.status_code == 200
    # A tenant with a wider tolerance takes the earlier receipt too.
    _set(flow, {"clockSkewSeconds": 900})
    later = receipt_body(key=EMAIL, used=[{"couponId": aids[2]}], created="2026-03-10T12:54:00+01:00")
    assert flow.send(later).json()["warnings"] == []


@pytest.mark.parametrize("value", [-1, 3601, "300", True, 1.5])
def test_the_clock_skew_setting_is_validated(flow: Flow, value: Any) -> None:
    with pytest.raises(InvalidSettingError):
        _set(flow, {"clockSkewSeconds": value})
