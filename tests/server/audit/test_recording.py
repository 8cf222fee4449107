"""The audit log records every kind of change with its actor, action, object and before → after, in the change's
own transaction (a refused or rolled-back change leaves nothing), per tenant (issue 14 §4)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from promoflow.server import audit
from promoflow.server.db import Database
from promoflow.server.models import tenant as tenant_table
from promoflow.server.promotion.service import PromotionService
from promoflow.server.tenant.service import context_from_row
from promoflow.wire.engage import MultichannelPromotionCreate
from tests.server._support import assert_error, assign, new_contact, new_promotion, promotion_body

from ._support import changes_of, entries

KEY = "default"  # the label of the key `tenant create` makes: the API's actor


def _one(found: list[dict[str, Any]], action: str) -> dict[str, Any]:
    hits = [e for e in found if e["action"] == action]
    assert len(hits) == 1, [e["action"] for e in found]
    return hits[0]


def test_promotion_lifecycle_through_the_api(api: Any) -> None:
    n = len(changes_of(api))
    body = promotion_body(name="Spring", start="2026-03-01", end="2026-03-31", external_id="SPR")
    pid = api.post("/api/v2/promotions/multichannels", json=body).json()["id"]
    body["name"] = "Spring sale"
    body["presentation"] = {"heading": "20% off"}
    assert api.put(f"/api/v2/promotions/multichannels/{pid}", json=body).status_code == 200
    validity = {"startDate": "2026-03-05", "endDate": "2026-03-31"}
    assert api.put(f"/api/v2/promotions/multichannels/{pid}/validity", json=validity).status_code == 200
    assert api.post(f"/api/v2/promotions/multichannels/{pid}/activate").status_code == 200
    assert api.post(f"/api/v2/promotions/multichannels/{pid}/deactivate").status_code == 200
    found = changes_of(api, n)
    assert [e["action"] for e in found] == [
        "promotion.create", "promotion.update", "promotion.update", "promotion.activate", "promotion.deactivate",
    ]  # fmt: skip
    for e in found:
        assert (e["actor_kind"], e["actor"], e["object_type"]) == ("api_key", KEY, "promotion")
        assert e["object_id"] == pid and str(e["promotion_id"]) == pid and e["contact_id"] is None
    create, rename, revalidate, activate, deactivate = found
    assert create["before"] is None
    assert create["after"]["name"] == "Spring" and create["after"]["externalId"] == "SPR"
    assert create["after"]["startDate"] == "2026-03-01" and create["after"]["status"] == "Draft"
    # an edit records only what changed
    assert rename["before"] == {"name": "Spring", "heading": None}
    assert rename["after"] == {"name": "Spring sale", "heading": "20% off"}
    assert revalidate["before"] == {"startDate": "2026-03-01"} and revalidate["after"] == {
        "startDate": "2026-03-05"
    }
    assert activate["before"] == {"status": "Draft"} and activate["after"]["status"] == "Active"
    assert activate["after"]["activatedAt"].startswith("2026-03-10T12:00")
    assert deactivate["before"] == {"status": "Active"} and deactivate["after"]["status"] == "Ended"


def test_an_edit_that_changes_nothing_records_nothing(api: Any) -> None:
    body = promotion_body()
    pid = api.post("/api/v2/promotions/multichannels", json=body).json()["id"]
    n = len(changes_of(api))
    assert api.put(f"/api/v2/promotions/multichannels/{pid}", json=body).status_code == 200
    assert changes_of(api, n) == []


def test_delete_records_what_was_deleted(api: Any) -> None:
    a = api.post("/api/v2/promotions/multichannels", json=promotion_body(name="Gone")).json()["id"]
    b = api.post("/api/v2/promotions/multichannels", json=promotion_body(external_id="GONE-2")).json()["id"]
    n = len(changes_of(api))
    assert api.delete(f"/api/v2/promotions/multichannels/{a}").status_code == 200
    assert api.delete("/api/v2/promotions/multichannels", params={"externalId": "GONE-2"}).status_code == 200
    first, second = changes_of(api, n)
    assert (first["action"], first["object_id"], first["after"]) == ("promotion.delete", a, None)
    assert first["before"]["name"] == "Gone" and first["before"]["status"] == "Draft"
    assert (second["object_id"], second["before"]["externalId"]) == (b, "GONE-2")


def test_refused_changes_record_nothing(api: Any) -> None:
    promo = new_promotion(api)  # active: no longer editable
    cid = new_contact(api)["id"]
    aid = assign(api, cid, promo["id"])["id"]
    other = new_contact(api)["id"]
    n = len(changes_of(api))
    r = api.put(f"/api/v2/promotions/multichannels/{promo['id']}", json=promotion_body())
    assert_error(r, 409, "PromotionNotDraft")
    assert_error(
        api.delete(f"/api/v2/promotions/multichannels/{promo['id']}"), 409, "PromotionHasAssignments"
    )
    assert_error(api.post(f"/api/v2/promotions/codes/{aid}/reactivate"), 409, "PromotionNotRedeemed")
    r = api.post(f"/api/v2/contacts/{other}", json={"email": "x"})
    assert r.status_code == 400
    assert changes_of(api, n) == []


def test_a_change_rolled_back_after_it_was_recorded_leaves_no_entry(api: Any) -> None:
    """The entry is written on the change's own connection: when the unit of work fails after the service
    recorded, both go."""
    url = api.settings.resolved_database_url()
    n = len(entries(url, api.tenant["tenantId"]))

    async def run() -> None:
        db = Database(url, pool_size=2)
        try:
            async with db.read() as conn:
                row = (
                    await conn.execute(
                        tenant_table.select().where(tenant_table.c.id == uuid.UUID(api.tenant["tenantId"]))
                    )
                ).first()
            ctx = context_from_row(row, actor=audit.Actor.cli())
            with pytest.raises(RuntimeError):
                async with db.write() as conn:
                    body = MultichannelPromotionCreate.model_validate(promotion_body())
                    await PromotionService(ctx, api.clock.now()).create(conn, body)
                    assert len(await _count(conn, ctx.tenant_id)) == n + 1  # recorded, inside the transaction
                    raise RuntimeError("the edge fails after the service")
        finally:
            await db.dispose()

    asyncio.run(run())
    assert len(entries(url, api.tenant["tenantId"])) == n


async def _count(conn: Any, tenant_id: uuid.UUID) -> list[Any]:
    from sqlalchemy import select

    from promoflow.server.models import audit_event

    return list(
        (await conn.execute(select(audit_event.c.id).where(audit_event.c.tenant_id == tenant_id))).all()
    )


def test_assignments_single_and_bulk(api: Any) -> None:
    promo = new_promotion(api)
    cids = [new_contact(api)["id"] for _ in range(3)]
    n = len(changes_of(api))
    aid = assign(api, cids[0], promo["id"])["id"]
    r = api.post("/api/v3/promotion-assignments", json={"contactId": cids[1], "promotionId": promo["id"]})
    assert r.status_code == 200
    r = api.post(f"/api/v2/promotions/multichannels/{promo['id']}/bulk-assignments",
                 json={"contactIds": cids, "batchId": "b1"})  # fmt: skip
    assert r.status_code == 202
    job_id = r.json()["jobId"] if "jobId" in r.json() else r.json()["id"]
    api.run_jobs()
    single, v3, bulk = changes_of(api, n)  # the job itself records nothing more
    assert (single["action"], single["object_type"], single["object_id"]) == (
        "assignment.create",
        "assignment",
        aid,
    )
    assert (str(single["contact_id"]), str(single["promotion_id"])) == (cids[0], promo["id"])
    assert single["after"]["contactId"] == cids[0] and single["after"]["source"] == "api"
    assert single["after"]["validFrom"].startswith("2026-") and single["actor"] == KEY
    assert v3["action"] == "assignment.create" and str(v3["contact_id"]) == cids[1]
    assert (bulk["action"], bulk["object_type"], bulk["object_id"]) == ("assignment.bulk", "job", job_id)
    assert bulk["after"] == {"promotionId": promo["id"], "contacts": 3, "origin": "api", "jobId": job_id}
    assert str(bulk["promotion_id"]) == promo["id"]


def test_redemptions_are_not_recorded_but_reactivations_are(api: Any) -> None:
    promo = new_promotion(api)
    cid = new_contact(api)["id"]
    aid = assign(api, cid, promo["id"])["id"]
    n = len(changes_of(api))
    r = api.post(
        f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "POS", "storeExternalId": "S1"}
    )
    assert r.status_code == 200, r.text
    assert changes_of(api, n) == []
    assert api.post(f"/api/v3/promotion-assignments/{aid}/reactivate").status_code == 200
    (e,) = changes_of(api, n)
    assert (e["action"], e["object_type"], e["object_id"]) == ("redemption.reactivate", "assignment", aid)
    assert (str(e["contact_id"]), str(e["promotion_id"])) == (cid, promo["id"])
    assert (
        e["before"]["redeemed"] is True and e["before"]["channel"] == "POS" and e["before"]["store"] == "S1"
    )
    assert e["before"]["reactivationCount"] == 0
    assert e["after"] == {"redeemed": False, "reactivationCount": 1}


def test_contacts_create_and_update(api: Any) -> None:
    n = len(changes_of(api))
    c = new_contact(api, email="ada@example.com", firstName="Ada", preferences={"acceptsEmail": True})
    again = api.post("/api/v2/contacts", json={"email": "ada@example.com"})
    assert again.status_code == 200  # the existing contact, unchanged: nothing recorded
    r = api.post(f"/api/v2/contacts/{c['id']}", json={"firstName": "Augusta", "lastName": "King", "city": ""})
    assert r.status_code == 200
    r = api.patch(f"/api/v3/contacts/{c['id']}", json={"preferences": {"acceptsEmail": False}})
    assert r.status_code == 200
    assert (
        api.post(f"/api/v2/contacts/{c['id']}", json={"firstName": "Augusta"}).status_code == 200
    )  # no change
    create, update, prefs = changes_of(api, n)
    assert (create["action"], create["object_id"], str(create["contact_id"])) == (
        "contact.create",
        c["id"],
        c["id"],
    )
    assert (
        create["after"]["email"] == "ada@example.com" and create["after"]["preferences.acceptsEmail"] is True
    )
    assert create["actor"] == KEY and create["before"] is None
    assert update["action"] == "contact.update"
    assert update["before"] == {"firstName": "Ada", "lastName": None}
    assert update["after"] == {"firstName": "Augusta", "lastName": "King"}
    assert prefs["before"] == {"preferences.acceptsEmail": True}
    assert prefs["after"] == {"preferences.acceptsEmail": False}


def test_a_named_key_is_the_actor(api: Any) -> None:
    """The actor is the key's name (a key made without one is named "unnamed-…")."""
    from promoflow.server.tenant.service import TenantService

    url = api.settings.resolved_database_url()

    async def add(label: str | None) -> str:
        db = Database(url, pool_size=2)
        try:
            async with db.write() as conn:
                return await TenantService(api.clock.now()).add_key(
                    conn, uuid.UUID(api.tenant["tenantId"]), label=label
                )
        finally:
            await db.dispose()

    till = asyncio.run(add("till-12"))
    bare = asyncio.run(add(None))
    new_contact(api, {"apikey": till})
    new_contact(api, {"apikey": bare})
    a, b = changes_of(api, action="contact.create")[-2:]
    assert (a["actor_kind"], a["actor"]) == ("api_key", "till-12")
    assert b["actor_kind"] == "api_key" and b["actor"].startswith("unnamed-")
    keys = changes_of(api, action="api_key.create")
    assert [k["after"]["name"] for k in keys][:2] == ["default", "till-12"]
    assert keys[2]["after"]["name"] == b["actor"]
    assert keys[1]["actor"] == "system" and keys[1]["after"]["prefix"] == till[:10]


def test_entries_belong_to_their_tenant(api: Any) -> None:
    other = api.new_tenant()
    mine = new_promotion(api, activate=False)["id"]
    theirs = new_promotion(api, api.as_tenant(other), activate=False)["id"]
    url = api.settings.resolved_database_url()
    assert {e["object_id"] for e in entries(url, api.tenant["tenantId"], action="promotion.create")} == {mine}
    assert {e["object_id"] for e in entries(url, other["tenantId"], action="promotion.create")} == {theirs}

    async def listed(tenant_id: str) -> set[str]:
        db = Database(url, pool_size=2)
        try:
            async with db.read() as conn:
                found, _ = await audit.service.page(conn, uuid.UUID(tenant_id), audit.service.AuditFilter())
                return {e.object_id for e in found}
        finally:
            await db.dispose()

    assert mine in asyncio.run(listed(api.tenant["tenantId"]))
    assert theirs not in asyncio.run(listed(api.tenant["tenantId"]))
