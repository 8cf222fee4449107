"""The PostgreSQL fast lane answers exactly what the routed endpoints answer, and leaves everything else to them."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_settings(pg_url, data_dir):
    return Settings(database_url=pg_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0)


def _client(settings, clock, fast: bool) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"fast_lane": fast}), clock=clock, run_worker=False)
    )


def _seed(client: TestClient, headers: dict[str, str]) -> tuple[str, str, list[str]]:
    cid = client.post("/api/v2/contacts", json={"email": "fast@example.com"}, headers=headers).json()["id"]
    promotions = [
        {"name": "10%", "externalId": "F1", "validity": {"startDate": "2026-01-01", "endDate": "2026-12-31"},
         "presentation": {"heading": "Ten", "imageUrl": "https://img.example/1.png"},
         "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "10", "instruction": "scan"}]},
        {"name": "50 SEK", "validity": {"startDate": "2026-01-01", "assignedValidity": {"unit": "Days", "amount": 3}},
         "redemptionChannels": [{"type": "POS", "valueType": "MONEY", "value": "50",
                                 "localValues": [{"currency": "EUR", "amount": 4.5}]},
                                {"type": "ECOM", "valueType": "EXTERNALOFFER", "value": "CODE50"}]},
        {"name": "web only", "validity": {"startDate": "2026-01-01"},
         "redemptionChannels": [{"type": "ECOM", "valueType": "PERCENT", "value": "5"}]},
    ]  # fmt: skip
    assignments = []
    for body in promotions:
        pid = client.post("/api/v2/promotions/multichannels", json=body, headers=headers).json()["id"]
        client.post(f"/api/v2/promotions/multichannels/{pid}/activate", headers=headers)
        for _ in range(2):
            r = client.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign", headers=headers)
            assignments.append(r.json()["id"])
    return cid, pid, assignments


def test_fetch_is_identical_on_both_paths(pg_settings, clock):
    from tests.conftest import make_tenant

    tenant = make_tenant(pg_settings)
    h = {"apikey": tenant["apiKey"]}
    with _client(pg_settings, clock, True) as fast, _client(pg_settings, clock, False) as routed:
        cid, _, _ = _seed(routed, h)
        for query in ("", "?redemptionChannelType=POS", "?redemptionChannelType=ecom"):
            a = fast.get(f"/api/v2/contacts/{cid}/promotions{query}", headers=h)
            b = routed.get(f"/api/v2/contacts/{cid}/promotions{query}", headers=h)
            assert a.status_code == b.status_code == 200
            assert a.json() == b.json() and a.json()
        assert fast.app.state.promoflow.extras["fastlane_answered"] == 3
        # the channel filter as a header goes the same way
        a = fast.get(f"/api/v2/contacts/{cid}/promotions", headers={**h, "redemptionChannelType": "POS"})
        assert (
            a.json()
            == routed.get(f"/api/v2/contacts/{cid}/promotions?redemptionChannelType=POS", headers=h).json()
        )


def test_redeem_is_identical_and_refusals_use_the_routed_answer(pg_settings, clock):
    from tests.conftest import make_tenant

    tenant = make_tenant(pg_settings)
    h = {"apikey": tenant["apiKey"]}
    with _client(pg_settings, clock, True) as fast, _client(pg_settings, clock, False) as routed:
        cid, _, (a1, a2, *_rest) = _seed(routed, h)
        x = fast.post(f"/api/v2/promotions/codes/{a1}/redeem", json={"redemptionChannel": "POS"}, headers=h)
        y = routed.post(f"/api/v2/promotions/codes/{a2}/redeem", json={"redemptionChannel": "POS"}, headers=h)
        assert x.status_code == y.status_code == 200
        strip = lambda d: {k: v for k, v in d.items() if k != "id"}  # noqa: E731
        assert strip(x.json()) == strip(y.json())
        assert fast.app.state.promoflow.extras["fastlane_answered"] == 1
        # a second redeem is refused with the routed path's precise error
        again = fast.post(f"/api/v2/contacts/{cid}/promotions/{a1}/redeem", json="POS", headers=h)
        assert again.status_code == 409 and again.json()["errorCode"] == "PromotionAlreadyRedeemed"
        wrong = fast.post(f"/api/v3/promotion-assignments/{_rest[0]}/redeem", json={"redemptionChannel": "OTHER"},
                          headers=h)  # fmt: skip
        assert (
            wrong.status_code == 409 and wrong.json()["errorCode"] == "PromotionNotValidForRedemptionChannel"
        )
        bad = fast.post(
            f"/api/v2/promotions/codes/{_rest[0]}/redeem", json={"redemptionChannel": "SHOP"}, headers=h
        )
        assert bad.status_code == 400 and bad.json()["errorCode"] == "NotAValidRedemptionChannel"
        assert fast.app.state.promoflow.extras["fastlane_answered"] == 1
        # no key → the same 401 as the routed path
        assert fast.get(f"/api/v2/contacts/{cid}/promotions").json()["errorCode"] == "MissingApiKey"
