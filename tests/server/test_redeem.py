"""Redeem (A8) on all three paths, its bodies and refusals, the contact-scoped path by template id, the extension
fields (stored with the redemption), and reactivation (A10) with its limit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from promoflow.server.db import make_sync_engine
from promoflow.server.models import redemption

from ._support import assert_error, channel, new_contact, new_promotion, snapshot


@pytest.fixture
def flow(api: Any) -> dict[str, Any]:
    cid = new_contact(api)["id"]
    p = new_promotion(api, channels=[channel("POS", "PERCENT", "10"), channel("ECOM", "PERCENT", "10")])
    aids = [api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/assign").json()["id"] for _ in range(3)]
    return {"cid": cid, "pid": p["id"], "aids": aids}


def _paths(cid: str, aid: str) -> list[str]:
    return [
        f"/api/v2/promotions/codes/{aid}/redeem",
        f"/api/v3/promotion-assignments/{aid}/redeem",
        f"/api/v2/contacts/{cid}/promotions/{aid}/redeem",
    ]


def _rows(api: Any, aid: str) -> list[Any]:
    engine = make_sync_engine(api.settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(select(redemption).where(redemption.c.assignment_id == uuid.UUID(aid))).all()
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("path_index", [0, 1, 2], ids=["v2-code", "v3", "v2-contact"])
def test_each_path_redeems_once(api: Any, flow: dict[str, Any], path_index: int) -> None:
    aid = flow["aids"][0]
    path = _paths(flow["cid"], aid)[path_index]
    r = api.post(path, json={"redemptionChannel": "pos"})
    assert r.status_code == 200
    item = r.json()
    assert (
        item["id"] == aid and item["redeemed"] is True and item["redeemedOn"] == "2026-03-10T13:00:00+01:00"
    )
    assert ("assignmentId" in item) is (path_index == 1)
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    for other in _paths(flow["cid"], aid):
        body = assert_error(
            api.post(other, json={"redemptionChannel": "ECOM"}), 409, "PromotionAlreadyRedeemed"
        )
        assert "2026-03-10T13:00:00+01:00" in body["message"] and "POS" in body["message"]
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before
    [row] = _rows(api, aid)
    assert (row.channel, row.via, row.seq) == ("POS", "api", 1)
    remaining = [i["id"] for i in api.get(f"/api/v2/contacts/{flow['cid']}/promotions").json()]
    assert aid not in remaining and len(remaining) == 2


def test_redeem_bodies(api: Any, flow: dict[str, Any]) -> None:
    p = new_promotion(api, channels=[channel("OTHER", "MANUAL", "Ask")])
    aids = [
        api.post(f"/api/v2/contacts/{flow['cid']}/promotions/{p['id']}/assign").json()["id"] for _ in range(3)
    ]
    headers = {**api.headers, "Content-Type": "application/json"}
    # A bare JSON string, no body at all, and null: the channel defaults to OTHER.
    assert api.post(f"/api/v2/promotions/codes/{flow['aids'][0]}/redeem", json="ECOM").status_code == 200
    assert (
        api.client.post(f"/api/v2/promotions/codes/{aids[0]}/redeem", headers=api.headers).status_code == 200
    )
    r = api.client.post(f"/api/v2/promotions/codes/{aids[1]}/redeem", content=b"null", headers=headers)
    assert r.status_code == 200
    r = api.client.post(f"/api/v2/promotions/codes/{aids[2]}/redeem", content=b"{}", headers=headers)
    assert r.status_code == 200
    assert [row.channel for a in aids for row in _rows(api, a)] == ["OTHER", "OTHER", "OTHER"]
    assert [row.channel for row in _rows(api, flow["aids"][0])] == ["ECOM"]


def test_refusals(api: Any, flow: dict[str, Any]) -> None:
    cid, aid = flow["cid"], flow["aids"][0]
    pos_only = new_promotion(api, channels=[channel("POS", "PERCENT", "5")])
    pos_aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pos_only['id']}/assign").json()["id"]
    other_cid = new_contact(api)["id"]
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    for path in _paths(cid, pos_aid):
        assert_error(
            api.post(path, json={"redemptionChannel": "ECOM"}), 409, "PromotionNotValidForRedemptionChannel"
        )
    unknown = str(uuid.uuid4())
    assert_error(api.post(f"/api/v2/promotions/codes/{unknown}/redeem", json="POS"), 404, "PromotionNotFound")
    assert_error(
        api.post(f"/api/v3/promotion-assignments/{unknown}/redeem", json="POS"), 404, "PromotionNotFound"
    )
    r = api.post(f"/api/v2/contacts/{other_cid}/promotions/{aid}/redeem", json="POS")
    assert_error(r, 404, "PromotionNotAssociatedWithContact")
    r = api.post(f"/api/v2/contacts/{other_cid}/promotions/{flow['pid']}/redeem", json="POS")
    assert_error(r, 404, "PromotionNotAssociatedWithContact")
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{unknown}/redeem", json="POS")
    assert_error(r, 404, "PromotionNotFound")
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before


def test_contact_scoped_redeem_by_template_id(api: Any) -> None:
    cid = new_contact(api)["id"]
    p = new_promotion(api)
    one = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/assign").json()["id"]
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/redeem", json="POS")
    assert r.status_code == 200 and r.json()["id"] == one
    # Nothing redeemable of it left: the contact's assignment says why (a retry of an uncertain redeem hears
    # "already redeemed", not "not assigned").
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/redeem", json="POS")
    assert_error(r, 409, "PromotionAlreadyRedeemed")
    # Two redeemable ones: which one is meant is ambiguous.
    a1 = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/assign").json()["id"]
    a2 = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/assign").json()["id"]
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/redeem", json="POS")
    assert_error(r, 409, "AmbiguousPromotionId")
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before
    assert api.post(f"/api/v2/contacts/{cid}/promotions/{a1}/redeem", json="POS").status_code == 200
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/redeem", json="POS")
    assert r.status_code == 200 and r.json()["id"] == a2
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{p['id']}/redeem", json="POS")
    assert_error(r, 409, "PromotionAlreadyRedeemed")
    # The template id is never accepted on the paths that take an assignment id.
    assert_error(api.post(f"/api/v2/promotions/codes/{p['id']}/redeem", json="POS"), 404, "PromotionNotFound")


def test_contact_scoped_redeem_by_template_id_says_why_none_is_redeemable(api: Any) -> None:
    """A template id whose only assignments cannot be redeemed answers the rule's refusal of one of them, as the
    assignment id would: expired, not yet valid; a contact holding none of it hears "not assigned"."""
    cid = new_contact(api)["id"]
    later = new_promotion(api, start="2026-06-01")["id"]
    api.post(f"/api/v2/contacts/{cid}/promotions/{later}/assign")
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{later}/redeem", json="POS")
    assert_error(r, 409, "PromotionNotYetValid")
    ending = new_promotion(api, end="2026-03-12")["id"]
    api.post(f"/api/v2/contacts/{cid}/promotions/{ending}/assign")
    other = new_contact(api)["id"]
    api.clock.set(datetime.fromisoformat("2026-03-13T00:00:00+01:00"))
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    r = api.post(f"/api/v2/contacts/{cid}/promotions/{ending}/redeem", json="POS")
    assert_error(r, 409, "PromotionExpired")
    r = api.post(f"/api/v2/contacts/{other}/promotions/{ending}/redeem", json="POS")
    assert_error(r, 404, "PromotionNotAssociatedWithContact")
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before


def test_extension_fields_are_kept_with_the_redemption(api: Any, flow: dict[str, Any]) -> None:
    aid = flow["aids"][0]
    api.clock.advance(timedelta(hours=2))  # the sale happened at 13:30, the POS reports it at 15:00
    r = api.post(
        f"/api/v2/promotions/codes/{aid}/redeem",
        json={"redemptionChannel": "POS", "redeemedOn": "2026-03-10T13:30:00+01:00", "storeExternalId": "S-7",
              "uniqueReceiptId": "R-123"},
        headers={**api.headers, "Idempotency-Key": "pos-7-r-123"},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["redeemedOn"] == "2026-03-10T13:30:00+01:00"
    [row] = _rows(api, aid)
    assert row.redeemed_at == datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    assert (row.store_external_id, row.unique_receipt_id, row.idempotency_key) == (
        "S-7",
        "R-123",
        "pos-7-r-123",
    )
    refused = api.post(f"/api/v2/promotions/codes/{aid}/redeem", json="POS")
    assert assert_error(refused, 409, "PromotionAlreadyRedeemed")["message"] == (
        "the promotion was already redeemed at 2026-03-10T13:30:00+01:00 via POS in store S-7 (receipt R-123)"
    )


def test_include_redeemed_lists_redeemed_and_expired_ones(api: Any, flow: dict[str, Any]) -> None:
    cid, aids = flow["cid"], flow["aids"]
    api.post(f"/api/v2/promotions/codes/{aids[0]}/redeem", json="POS")
    short = new_promotion(api, end="2026-03-10")
    gone = api.post(f"/api/v2/contacts/{cid}/promotions/{short['id']}/assign").json()["id"]
    api.clock.set(datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    assert [i["id"] for i in api.get(f"/api/v2/contacts/{cid}/promotions").json()] == sorted(aids[1:])
    everything = api.get(f"/api/v2/contacts/{cid}/promotions?includeRedeemed=true").json()
    by_id = {i["id"]: i for i in everything}
    assert set(by_id) == {*aids, gone}
    assert by_id[aids[0]]["redeemed"] is True and by_id[aids[0]]["redeemedOn"] == "2026-03-10T13:00:00+01:00"
    assert by_id[gone]["redeemed"] is False and by_id[gone]["expiresOn"] == "2026-03-10T23:59:59+01:00"


def test_reactivation_up_to_the_limit(api: Any, flow: dict[str, Any]) -> None:
    cid, aid = flow["cid"], flow["aids"][0]
    assert_error(api.post(f"/api/v2/promotions/codes/{aid}/reactivate"), 409, "PromotionNotRedeemed")
    for n in range(3):
        api.clock.advance(timedelta(minutes=1))
        assert api.post(f"/api/v2/promotions/codes/{aid}/redeem", json="POS").status_code == 200
        path = (
            f"/api/v2/promotions/codes/{aid}/reactivate"
            if n % 2 == 0
            else f"/api/v3/promotion-assignments/{aid}/reactivate"
        )
        r = api.post(path)
        assert r.status_code == 200 and r.json()["redeemed"] is False and "redeemedOn" not in r.json()
        assert ("assignmentId" in r.json()) is (n % 2 == 1)
        assert aid in [i["id"] for i in api.get(f"/api/v2/contacts/{cid}/promotions").json()]
    assert api.post(f"/api/v2/promotions/codes/{aid}/redeem", json="POS").status_code == 200
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    assert_error(api.post(f"/api/v2/promotions/codes/{aid}/reactivate"), 409, "ReactivationLimitExceeded")
    assert_error(
        api.post(f"/api/v3/promotion-assignments/{aid}/reactivate"), 409, "ReactivationLimitExceeded"
    )
    assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == before
    rows = _rows(api, aid)
    assert [r.seq for r in sorted(rows, key=lambda r: r.seq)] == [1, 2, 3, 4]
    assert [r.reactivated_at is not None for r in sorted(rows, key=lambda r: r.seq)] == [
        True,
        True,
        True,
        False,
    ]
    assert_error(api.post(f"/api/v2/promotions/codes/{uuid.uuid4()}/reactivate"), 404, "PromotionNotFound")


def test_reactivation_after_expiry_and_a_configured_limit(api: Any) -> None:
    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService

    tenant = api.new_tenant()

    async def configure() -> None:
        db = Database(api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(
                    conn, tenant["name"], {"reactivationLimit": 1}
                )
        finally:
            await db.dispose()

    asyncio.run(configure())
    h = api.as_tenant(tenant)
    cid = new_contact(api, headers=h)["id"]
    pid = new_promotion(api, headers=h, end="2026-03-12")["id"]
    aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign", headers=h).json()["id"]
    assert api.post(f"/api/v2/promotions/codes/{aid}/redeem", json="POS", headers=h).status_code == 200
    assert api.post(f"/api/v2/promotions/codes/{aid}/reactivate", headers=h).status_code == 200
    assert api.post(f"/api/v2/promotions/codes/{aid}/redeem", json="POS", headers=h).status_code == 200
    assert_error(
        api.post(f"/api/v2/promotions/codes/{aid}/reactivate", headers=h), 409, "ReactivationLimitExceeded"
    )

    other = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign", headers=h).json()["id"]
    assert api.post(f"/api/v2/promotions/codes/{other}/redeem", json="POS", headers=h).status_code == 200
    api.clock.set(datetime.fromisoformat("2026-03-13T00:00:00+01:00"))
    assert_error(api.post(f"/api/v2/promotions/codes/{other}/reactivate", headers=h), 409, "PromotionExpired")


def test_a_definition_id_on_the_codes_path_is_named_as_such(api: Any, flow: dict[str, Any]) -> None:
    """Issue 11 §8: redeem takes the assignment id; a definition id gets a message that says so."""
    for path in (
        f"/api/v2/promotions/codes/{flow['pid']}/redeem",
        f"/api/v3/promotion-assignments/{flow['pid']}/redeem",
    ):
        body = assert_error(api.post(path, json="POS"), 404, "PromotionNotFound")
        assert "promotion definition" in body["message"] and "assignment id" in body["message"]
    unknown = assert_error(
        api.post(f"/api/v2/promotions/codes/{uuid.uuid4()}/redeem", json="POS"), 404, "PromotionNotFound"
    )
    assert "definition" not in unknown["message"]
