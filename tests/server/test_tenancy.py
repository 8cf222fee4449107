"""Tenant isolation: a key of tenant B sees nothing of tenant A. Every path answers B about A's contacts,
promotions, assignments and jobs exactly as it answers about ids that do not exist (same status, errorCode and
message once the id is masked), and A's data is unchanged afterwards."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ._support import assert_error, new_contact, new_promotion, snapshot


@pytest.fixture
def world(api: Any) -> Iterator[dict[str, Any]]:
    """Tenant A with a contact, an active promotion (with externalId), an open assignment, a redeemed one and a bulk
    job; tenant B with its own contact and promotion."""
    a = {"email": "ada@example.com", "mobilePhone": "+46701234567", "socialSecurityNumber": "191212121212"}
    cid = new_contact(api, **a)["id"]
    promo = new_promotion(
        api, external_id="A-ONLY", channels=[{"type": "POS", "valueType": "PERCENT", "value": "20"}]
    )
    pid = promo["id"]
    open_aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
    used_aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
    assert api.post(f"/api/v2/promotions/codes/{used_aid}/redeem", json="POS").status_code == 200
    draft = new_promotion(api, activate=False, external_id="A-DRAFT")["id"]
    job = api.post(f"/api/v2/promotions/multichannels/{pid}/bulk-assignments", json={"contactIds": [cid]})
    assert job.status_code == 202
    b = api.new_tenant()
    hb = api.as_tenant(b)
    b_cid = new_contact(api, headers=hb, email="bea@example.com")["id"]
    b_pid = new_promotion(api, headers=hb)["id"]
    yield {
        "a": api.tenant,
        "b": b,
        "hb": hb,
        "cid": cid,
        "pid": pid,
        "draft": draft,
        "open": open_aid,
        "used": used_aid,
        "job": job.json()["id"],
        "member_number": api.get(f"/api/v2/contacts/{cid}").json()["attributes"]["memberNumber"],
        "b_cid": b_cid,
        "b_pid": b_pid,
    }
    # Run A's bulk job, so no job of this test is left due in the shared test database for another test's worker.
    api.run_jobs()


def _masked(body: dict[str, Any], *ids: str) -> dict[str, Any]:
    message = body["message"]
    for ident in ids:
        message = message.replace(ident, "<id>")
    return {**body, "message": re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", message)}


def _same_as_unknown(api: Any, w: dict[str, Any], method: str, path: str, real: list[str], **kw: Any) -> None:
    """B's answer about A's ids equals B's answer about fresh random ids in the same places."""
    fake_path = path
    for ident in real:
        fake_path = fake_path.replace(ident, str(uuid.uuid4()))
    seen = api.client.request(method, path, headers=w["hb"], **kw)
    unknown = api.client.request(method, fake_path, headers=w["hb"], **kw)
    assert seen.status_code == unknown.status_code == 404, (path, seen.text, unknown.text)
    assert _masked(seen.json(), *real) == _masked(unknown.json(), *real), path


ENTITY_PATHS = [
    ("GET", "/api/v2/contacts/{cid}", ["cid"]),
    ("GET", "/api/v3/contacts/{cid}", ["cid"]),
    ("POST", "/api/v2/contacts/{cid}", ["cid"], {"json": {"firstName": "Mallory"}}),
    ("PATCH", "/api/v3/contacts/{cid}", ["cid"], {"json": {"firstName": "Mallory"}}),
    ("GET", "/api/v2/contacts/{cid}/promotions", ["cid"]),
    ("GET", "/api/v2/contacts/{cid}/promotions?redemptionChannelType=POS", ["cid"]),
    ("GET", "/api/v3/promotion-assignments?contactId={cid}", ["cid"]),
    ("GET", "/api/v2/promotions/multichannels/{pid}", ["pid"]),
    ("GET", "/api/v3/promotions/multichannels/{pid}", ["pid"]),
    ("GET", "/api/v2/promotions/multichannels/{pid}/validity", ["pid"]),
    (
        "PUT",
        "/api/v2/promotions/multichannels/{draft}",
        ["draft"],
        {"json": {"name": "x", "validity": {"startDate": "2026-04-01"}}},
    ),
    (
        "PUT",
        "/api/v2/promotions/multichannels/{draft}/validity",
        ["draft"],
        {"json": {"startDate": "2026-04-01"}},
    ),
    ("DELETE", "/api/v2/promotions/multichannels/{draft}", ["draft"]),
    ("POST", "/api/v2/promotions/multichannels/{draft}/activate", ["draft"]),
    ("POST", "/api/v2/promotions/multichannels/{pid}/deactivate", ["pid"]),
    ("POST", "/api/v2/contacts/{b_cid}/promotions/{pid}/assign", ["pid"]),
    ("POST", "/api/v2/contacts/{cid}/promotions/{b_pid}/assign", ["cid"]),
    ("POST", "/api/v3/promotion-assignments", [], "v3-assign-promotion"),
    ("POST", "/api/v3/promotion-assignments", [], "v3-assign-contact"),
    ("POST", "/api/v2/promotions/codes/{open}/redeem", ["open"], {"json": {"redemptionChannel": "POS"}}),
    ("POST", "/api/v3/promotion-assignments/{open}/redeem", ["open"], {"json": {"redemptionChannel": "POS"}}),
    (
        "POST",
        "/api/v2/contacts/{cid}/promotions/{open}/redeem",
        ["cid", "open"],
        {"json": {"redemptionChannel": "POS"}},
    ),
    (
        "POST",
        "/api/v2/contacts/{b_cid}/promotions/{open}/redeem",
        ["open"],
        {"json": {"redemptionChannel": "POS"}},
    ),
    (
        "POST",
        "/api/v2/contacts/{b_cid}/promotions/{pid}/redeem",
        ["pid"],
        {"json": {"redemptionChannel": "POS"}},
    ),
    ("POST", "/api/v2/promotions/codes/{used}/reactivate", ["used"]),
    ("POST", "/api/v3/promotion-assignments/{used}/reactivate", ["used"]),
    (
        "POST",
        "/api/v2/promotions/multichannels/{pid}/bulk-assignments",
        ["pid"],
        {"json": {"contactIds": ["{b_cid}"]}},
    ),
    ("GET", "/api/v2/jobs/{job}", ["job"]),
]


def test_b_gets_404_for_a_s_things_as_for_unknown_ones(api: Any, world: dict[str, Any]) -> None:
    w = world
    fill = {k: v for k, v in w.items() if isinstance(v, str)}
    before = snapshot(api.settings.resolved_database_url(), w["a"]["tenantId"])
    for case in ENTITY_PATHS:
        method, template, real_names = case[0], case[1], case[2]
        extra = case[3] if len(case) > 3 else {}
        path = template.format(**fill)
        real = [w[n] for n in real_names]
        if extra in ("v3-assign-promotion", "v3-assign-contact"):
            body = (
                {"contactId": w["b_cid"], "promotionId": w["pid"]}
                if extra == "v3-assign-promotion"
                else {"contactId": w["cid"], "promotionId": w["b_pid"]}
            )
            real = [w["pid"] if extra == "v3-assign-promotion" else w["cid"]]
            seen = api.client.post(path, headers=w["hb"], json=body)
            fake = {k: (str(uuid.uuid4()) if v in real else v) for k, v in body.items()}
            unknown = api.client.post(path, headers=w["hb"], json=fake)
            assert seen.status_code == unknown.status_code == 404, (extra, seen.text)
            assert _masked(seen.json(), *real) == _masked(unknown.json(), *real), extra
            continue
        kw = {"json": _fill(extra["json"], fill)} if extra else {}
        _same_as_unknown(api, w, method, path, real, **kw)
    assert snapshot(api.settings.resolved_database_url(), w["a"]["tenantId"]) == before


def _fill(value: Any, fill: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**fill)
    if isinstance(value, list):
        return [_fill(v, fill) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, fill) for k, v in value.items()}
    return value


def test_b_cannot_look_up_a_s_contacts(api: Any, world: dict[str, Any]) -> None:
    queries = ["email=ada@example.com", "mobilePhone=%2B46701234567", "socialSecurityNumber=191212121212",
               "any=ada@example.com", "any=%2B46701234567"]  # fmt: skip
    for query in queries:
        assert api.get(f"/api/v2/contacts/id?{query}").status_code == 200, query
        for version in ("v2", "v3"):
            r = api.client.get(f"/api/{version}/contacts/id?{query}", headers=world["hb"])
            assert r.status_code == 404, (version, query, r.text)
            assert_error(r, 404, "ContactNotFound")
    # Member numbers are counted per tenant: A's number names B's own first contact for B, never A's.
    assert world["member_number"] == "00000001"
    r = api.client.get(f"/api/v2/contacts/id?customKey={world['member_number']}", headers=world["hb"])
    assert r.status_code == 200 and r.json() == world["b_cid"]


def test_lists_and_counts_show_only_the_callers_tenant(api: Any, world: dict[str, Any]) -> None:
    hb = world["hb"]
    assert api.client.get("/api/v2/contacts/count", headers=hb).json() == 1
    assert api.get("/api/v2/contacts/count").json() == 1
    listed = api.client.get("/api/v2/promotions/multichannels", headers=hb).json()
    assert [p["id"] for p in listed["items"]] == [world["b_pid"]] and listed["totalCount"] == 1
    assert_error(
        api.client.get("/api/v2/promotions/multichannels?externalId=A-ONLY", headers=hb),
        404,
        "PromotionNotFound",
    )
    assert_error(
        api.client.get("/api/v2/promotions/multichannels/validity?externalId=A-ONLY", headers=hb),
        404,
        "PromotionNotFound",
    )
    assert_error(
        api.client.delete("/api/v2/promotions/multichannels?externalId=A-DRAFT", headers=hb),
        404,
        "PromotionNotFound",
    )
    assert api.client.get(f"/api/v2/contacts/{world['b_cid']}/promotions", headers=hb).json() == []


def test_b_cannot_bulk_assign_to_a_s_contacts(api: Any, world: dict[str, Any]) -> None:
    hb = world["hb"]
    before = snapshot(api.settings.resolved_database_url(), world["a"]["tenantId"])
    r = api.client.post(
        f"/api/v2/promotions/multichannels/{world['b_pid']}/bulk-assignments",
        json={"contactIds": [world["cid"], world["b_cid"]], "contactKeys": ["ada@example.com"]},
        headers=hb,
    )
    assert r.status_code == 202
    assert api.run_jobs() >= 1
    job = api.client.get(f"/api/v2/jobs/{r.json()['id']}", headers=hb).json()
    assert job["status"] == "succeeded"
    assert job["result"]["assigned"] == 1 and job["result"]["notFound"] == 2
    # A's job was run too (it is A's, and unchanged by B); A's rows are otherwise as they were.
    after = snapshot(api.settings.resolved_database_url(), world["a"]["tenantId"])
    assert after["contact"] == before["contact"] and after["promotion"] == before["promotion"]
    a_items = api.get(f"/api/v2/contacts/{world['cid']}/promotions").json()
    assert {i["promotionId"] for i in a_items} == {world["pid"]}
    # A's job is not B's to see, and B's is not A's.
    assert_error(api.get(f"/api/v2/jobs/{r.json()['id']}"), 404, "JobNotFound")


def test_a_s_data_is_untouched_by_everything_b_tried(api: Any, world: dict[str, Any]) -> None:
    items = api.get(f"/api/v2/contacts/{world['cid']}/promotions").json()
    assert [i["id"] for i in items] == [world["open"]]
    assert api.get(f"/api/v2/promotions/multichannels/{world['pid']}").json()["status"] == "Active"
    assert api.get(f"/api/v2/contacts/{world['cid']}").json()["attributes"]["email"] == "ada@example.com"
