"""The core flow end to end through the API: create, activate, assign, fetch, redeem once."""

from __future__ import annotations


def test_promotion_flow_redeems_once(api):
    r = api.post("/api/v2/contacts", json={"email": "ada@example.com", "firstName": "Ada"})
    assert r.status_code == 201, r.text
    contact_id = r.json()["id"]
    r = api.post(
        "/api/v2/promotions/multichannels",
        json={
            "name": "20% off",
            "validity": {"startDate": "2026-01-01", "endDate": "2026-12-31"},
            "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "20"}],
        },
    )
    assert r.status_code == 201, r.text
    promotion_id = r.json()["id"]
    assert api.post(f"/api/v2/promotions/multichannels/{promotion_id}/activate").json()["status"] == "Active"
    r = api.post(f"/api/v2/contacts/{contact_id}/promotions/{promotion_id}/assign")
    assert r.status_code == 200, r.text
    assignment_id = r.json()["id"]
    items = api.get(
        f"/api/v2/contacts/{contact_id}/promotions", params={"redemptionChannelType": "POS"}
    ).json()
    assert [i["id"] for i in items] == [assignment_id]
    assert items[0]["redemptionChannels"][0]["value"] == 20
    assert items[0]["expiresOn"] == "2026-12-31T23:59:59+01:00"
    r = api.post(f"/api/v2/promotions/codes/{assignment_id}/redeem", json={"redemptionChannel": "POS"})
    assert r.status_code == 200 and r.json()["redeemed"] is True
    r = api.post(f"/api/v2/promotions/codes/{assignment_id}/redeem", json={"redemptionChannel": "POS"})
    assert r.status_code == 409 and r.json()["errorCode"] == "PromotionAlreadyRedeemed"
    assert api.get(f"/api/v2/contacts/{contact_id}/promotions").json() == []
