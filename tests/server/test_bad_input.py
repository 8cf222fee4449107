"""Bad input gets the A3 error body `{statusCode, errorCode, message}` with the right status — never a 500 — and
changes nothing (every row the tenant owns is compared before and after). Unknown JSON fields are ignored.
Authentication (A2): missing or unknown key 401, `Authorization: Bearer` accepted, a revoked key refused."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ._support import assert_error, new_contact, new_promotion, promotion_body, snapshot


@pytest.fixture
def world(api: Any) -> dict[str, Any]:
    cid = new_contact(api, email="ada@example.com", firstName="Ada")["id"]
    pid = new_promotion(api, channels=[{"type": "POS", "valueType": "PERCENT", "value": "20"}])["id"]
    aid = api.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
    draft = new_promotion(api, activate=False)["id"]
    return {"cid": cid, "pid": pid, "aid": aid, "draft": draft}


def _unchanged(api: Any) -> Any:
    """Context: the tenant's rows are the same after the block as before it."""

    class Check:
        def __enter__(self) -> None:
            self.before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])

        def __exit__(self, *exc: Any) -> None:
            if exc[0] is None:
                assert snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"]) == self.before

    return Check()


def _send(api: Any, method: str, path: str, body: bytes, ctype: str | None = "application/json") -> Any:
    headers = dict(api.headers)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return api.client.request(method, path, content=body, headers=headers)


WRITES = [
    ("POST", "/api/v2/contacts"),
    ("POST", "/api/v3/contacts"),
    ("POST", "/api/v2/contacts/{cid}"),
    ("PATCH", "/api/v3/contacts/{cid}"),
    ("POST", "/api/v2/promotions/multichannels"),
    ("PUT", "/api/v2/promotions/multichannels/{draft}"),
    ("PUT", "/api/v2/promotions/multichannels/{draft}/validity"),
    ("POST", "/api/v3/promotion-assignments"),
    ("POST", "/api/v2/promotions/codes/{aid}/redeem"),
    ("POST", "/api/v3/promotion-assignments/{aid}/redeem"),
    ("POST", "/api/v2/contacts/{cid}/promotions/{aid}/redeem"),
    ("POST", "/api/v2/promotions/multichannels/{pid}/bulk-assignments"),
]


def test_malformed_json_is_400(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for method, path in WRITES:
            for body in (b'{"email": "x@example.com",', b"{'a': 1}", b"nope", b'{"a": 1} trailing'):
                r = _send(api, method, path.format(**world), body)
                assert r.status_code == 400, (method, path, body, r.text)
                assert_error(r, 400, "InvalidJson")


def test_a_body_without_json_content_type_is_415(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for method, path in WRITES:
            for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
                r = _send(api, method, path.format(**world), b'{"redemptionChannel": "POS"}', ctype)
                assert r.status_code == 415, (method, path, ctype, r.text)
                body = assert_error(r, 415, "UnsupportedMediaType")
                assert "Content-Type: application/json" in body["message"]


def test_json_content_type_with_charset_and_suffix_is_accepted(api: Any) -> None:
    r = _send(
        api, "POST", "/api/v2/contacts", b'{"email": "a@example.com"}', "application/json; charset=utf-8"
    )
    assert r.status_code == 201
    r = _send(api, "POST", "/api/v2/contacts", b'{"email": "b@example.com"}', "application/vnd.engage+json")
    assert r.status_code == 201


def test_a_body_over_one_mib_is_413(api: Any, world: dict[str, Any]) -> None:
    big = b'{"email": "big@example.com", "firstName": "' + b"x" * (1024 * 1024) + b'"}'
    with _unchanged(api):
        assert_error(_send(api, "POST", "/api/v2/contacts", big), 413, "PayloadTooLarge")
        assert_error(
            _send(api, "POST", f"/api/v2/promotions/codes/{world['aid']}/redeem", big), 413, "PayloadTooLarge"
        )

        def chunks() -> Any:  # no Content-Length: the limit is enforced on the bytes that arrive
            for _ in range(20):
                yield b" " * 65536
            yield b'{"email": "chunked@example.com"}'

        headers = {**api.headers, "Content-Type": "application/json"}
        r = api.client.post("/api/v2/contacts", content=chunks(), headers=headers)
        assert_error(r, 413, "PayloadTooLarge")
    just_under = b'{"email": "fits@example.com", "x": "' + b"y" * (1024 * 1024 - 100) + b'"}'
    assert len(just_under) <= 1024 * 1024
    assert _send(api, "POST", "/api/v2/contacts", just_under).status_code == 201


WRONG_TYPES = [
    ("/api/v2/promotions/multichannels", {**promotion_body(), "name": 123}, "name"),
    ("/api/v2/promotions/multichannels", {**promotion_body(), "name": ""}, "name"),
    ("/api/v2/promotions/multichannels", {**promotion_body(), "validity": "2026"}, "validity"),
    ("/api/v2/promotions/multichannels", promotion_body(start="tomorrow"), "validity.startDate"),
    ("/api/v2/promotions/multichannels", promotion_body(start="2026-13-01"), "validity.startDate"),
    (
        "/api/v2/promotions/multichannels",
        {**promotion_body(), "redemptionChannels": {"type": "POS"}},
        "redemptionChannels",
    ),
    (
        "/api/v2/promotions/multichannels",
        promotion_body(channels=[{"type": "POS"}]),
        "redemptionChannels[0].valueType",
    ),
    (
        "/api/v2/promotions/multichannels",
        promotion_body(channels=[{"type": 1, "valueType": "PERCENT", "value": "5"}]),
        "redemptionChannels[0].type",
    ),
    (
        "/api/v2/promotions/multichannels",
        promotion_body(channels=[{"type": "POS", "valueType": "PERCENT", "value": True}]),
        "redemptionChannels[0].value",
    ),
    (
        "/api/v2/promotions/multichannels",
        promotion_body(assigned={"unit": "Years", "amount": 1}),
        "validity.assignedValidity.unit",
    ),
    (
        "/api/v2/promotions/multichannels",
        promotion_body(assigned={"unit": "Days", "amount": "many"}),
        "validity.assignedValidity.amount",
    ),
    (
        "/api/v2/promotions/multichannels",
        {**promotion_body(), "presentation": {"heading": ["x"]}},
        "presentation.heading",
    ),
    ("/api/v3/promotion-assignments", {"contactId": 5, "promotionId": None}, "contactId"),
    ("/api/v2/promotions/multichannels/{pid}/bulk-assignments", {"contactIds": "all"}, "contactIds"),
    ("/api/v2/promotions/codes/{aid}/redeem", {"redemptionChannel": 5}, "redemptionChannel"),
    (
        "/api/v2/promotions/codes/{aid}/redeem",
        {"redemptionChannel": "POS", "storeExternalId": {"id": 1}},
        "storeExternalId",
    ),
]


def test_wrong_types_are_400_naming_the_field(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for path, body, field in WRONG_TYPES:
            r = api.post(path.format(**world), json=body)
            assert r.status_code == 400, (path, body, r.text)
            err = assert_error(r, 400, "InvalidPayload")
            assert field in err["message"], (field, err)


BAD_VALUES = [
    ("POST", "/api/v2/contacts", b'{"email": "nan@example.com", "firstName": NaN}', "InvalidAttributeValue"),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "inf@example.com", "firstName": 1e999}',
        "InvalidAttributeValue",
    ),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "nul@example.com", "firstName": "a\\u0000b"}',
        "InvalidAttributeValue",
    ),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "o@example.com", "firstName": {"a": 1}}',
        "InvalidAttributeValue",
    ),
    ("POST", "/api/v2/contacts", b'{"email": "not-an-email"}', "InvalidEmailAddress"),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "p@example.com", "mobilePhone": "call me"}',
        "InvalidPhoneNumber",
    ),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "q@example.com", "socialSecurityNumber": "191212121213"}',
        "InvalidSocialSecurityNumber",
    ),
    ("POST", "/api/v2/contacts", b'{"email": "r@example.com", "contactType": "Alien"}', "InvalidContactType"),
    ("POST", "/api/v2/contacts", b'{"firstName": "No key"}', "MissingKeyAttribute"),
    (
        "POST",
        "/api/v2/contacts",
        b'{"email": "s@example.com", "preferences": {"acceptsEmail": "yes"}}',
        "InvalidPayload",
    ),
    ("POST", "/api/v2/contacts", b"[]", "InvalidPayload"),
    ("POST", "/api/v2/contacts/{cid}", b'{"email": null}', "MissingKeyAttribute"),
    ("PATCH", "/api/v3/contacts/{cid}", b'{"mobilePhone": "x"}', "InvalidPhoneNumber"),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-05-01", "endDate": "2026-04-01"}}',
        "InvalidValidity",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "0001-01-01"}}',
        "InvalidValidity",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "9999-12-31"}}',
        "InvalidValidity",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "120"}]}',
        "InvalidPromotionValue",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "redemptionChannels": [{"type": "POS", "valueType": "MONEY", "value": "1e400"}]}',
        "InvalidPromotionValue",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "redemptionChannels": [{"type": "POS", "valueType": "MONEY", "value": "5", "localValues": [{"currency": "EUR", "amount": 1e300}]}]}',
        "InvalidPromotionValue",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "redemptionChannels": [{"type": "POS", "valueType": "EXTERNALOFFER"}]}',
        "InvalidPromotionValue",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": "5"}, {"type": "pos", "valueType": "PERCENT", "value": "6"}]}',
        "DuplicateRedemptionChannel",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "a\\u0000b", "validity": {"startDate": "2026-01-01"}}',
        "InvalidPayload",
    ),
    (
        "POST",
        "/api/v2/promotions/multichannels",
        b'{"name": "x", "validity": {"startDate": "2026-01-01"}, "presentation": {"heading": "\\u0000"}}',
        "InvalidPayload",
    ),
    (
        "POST",
        "/api/v2/promotions/codes/{aid}/redeem",
        b'{"redemptionChannel": "POS", "redeemedOn": "0001-01-01T00:00:00+14:00"}',
        "InvalidRedeemedOn",
    ),
    (
        "POST",
        "/api/v2/promotions/codes/{aid}/redeem",
        b'{"redemptionChannel": "POS", "redeemedOn": "2027-01-01T00:00:00+01:00"}',
        "InvalidRedeemedOn",
    ),
    ("POST", "/api/v2/promotions/codes/{aid}/redeem", b"[1, 2]", "InvalidPayload"),
    ("POST", "/api/v2/promotions/multichannels/{pid}/bulk-assignments", b"{}", "InvalidPayload"),
    (
        "POST",
        "/api/v2/promotions/multichannels/{pid}/bulk-assignments",
        b'{"contactIds": ["x"], "contactType": "Alien"}',
        "InvalidContactType",
    ),
]


def test_bad_values_are_400(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for method, path, body, code in BAD_VALUES:
            r = _send(api, method, path.format(**world), body)
            assert r.status_code == 400, (method, path, body, r.text)
            assert_error(r, 400, code)


BAD_QUERIES = [
    ("/api/v2/promotions/multichannels?count=abc", "InvalidPayload"),
    ("/api/v2/promotions/multichannels?count=100000", "InvalidPayload"),
    ("/api/v2/promotions/multichannels?offset=-1", "InvalidPayload"),
    ("/api/v2/promotions/multichannels?offset=99999999999999999999", "InvalidPayload"),
    ("/api/v2/promotions/multichannels?status=Nope", "InvalidPayload"),
    ("/api/v2/contacts/{cid}/promotions?includeRedeemed=maybe", "InvalidPayload"),
    ("/api/v2/contacts/id", "InvalidSearchQuery"),
    ("/api/v2/contacts/id?email=ada@example.com&mobilePhone=%2B46701234567", "InvalidSearchQuery"),
    ("/api/v2/contacts/id?email=%00", "InvalidEncoding"),
    ("/api/v2/contacts/id?contactType=Alien&email=ada@example.com", "InvalidContactType"),
    ("/api/v2/contacts/id?socialSecurityNumber=123", "InvalidSocialSecurityNumber"),
    ("/api/v2/jobs/xyz", "InvalidJobId"),
]


def test_bad_queries_are_400(api: Any, world: dict[str, Any]) -> None:
    for path, code in BAD_QUERIES:
        r = api.get(path.format(**world))
        assert r.status_code == 400, (path, r.text)
        assert_error(r, 400, code)


def test_a_nul_in_a_search_is_refused_on_every_database(api: Any) -> None:
    for path in ("/api/v2/contacts/id?customKey=a%00b", "/api/v2/promotions/multichannels?externalId=a%00b"):
        # Refused before any database sees it: PostgreSQL would refuse it, SQLite would search for it.
        assert_error(api.get(path), 400, "InvalidEncoding")


NOT_GUIDS = [
    ("GET", "/api/v2/contacts/{x}", "InvalidContactId"),
    ("GET", "/api/v3/contacts/{x}", "InvalidContactId"),
    ("POST", "/api/v2/contacts/{x}", "InvalidContactId"),
    ("PATCH", "/api/v3/contacts/{x}", "InvalidContactId"),
    ("GET", "/api/v2/contacts/{x}/promotions", "InvalidContactId"),
    ("GET", "/api/v3/promotion-assignments?contactId={x}", "InvalidContactId"),
    ("POST", "/api/v2/contacts/{x}/promotions/{pid}/assign", "InvalidContactId"),
    ("POST", "/api/v2/contacts/{cid}/promotions/{x}/assign", "InvalidPromotionId"),
    ("GET", "/api/v2/promotions/multichannels/{x}", "InvalidPromotionIdNoData"),
    ("PUT", "/api/v2/promotions/multichannels/{x}", "InvalidPromotionIdNoData"),
    ("DELETE", "/api/v2/promotions/multichannels/{x}", "InvalidPromotionIdNoData"),
    ("GET", "/api/v2/promotions/multichannels/{x}/validity", "InvalidPromotionIdNoData"),
    ("POST", "/api/v2/promotions/multichannels/{x}/activate", "InvalidPromotionIdNoData"),
    ("POST", "/api/v2/promotions/multichannels/{x}/bulk-assignments", "InvalidPromotionIdNoData"),
    ("POST", "/api/v2/promotions/codes/{x}/redeem", "InvalidPromotionIdNoData"),
    ("POST", "/api/v3/promotion-assignments/{x}/redeem", "InvalidPromotionIdNoData"),
    ("POST", "/api/v2/contacts/{cid}/promotions/{x}/redeem", "InvalidPromotionIdNoData"),
    ("POST", "/api/v2/contacts/{x}/promotions/{aid}/redeem", "InvalidContactId"),
    ("POST", "/api/v2/promotions/codes/{x}/reactivate", "InvalidPromotionIdNoData"),
    ("POST", "/api/v3/promotion-assignments/{x}/reactivate", "InvalidPromotionIdNoData"),
]


def test_non_guid_ids_are_400(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for method, path, code in NOT_GUIDS:
            kw: dict[str, Any] = {}
            if method in ("POST", "PUT", "PATCH"):
                kw["json"] = (
                    promotion_body() if method == "PUT" else {"redemptionChannel": "POS", "contactIds": []}
                )
            for bad in ("not-a-guid", "g" * 32, "00000000-0000-0000-0000-00000000000"):
                r = api.client.request(method, path.format(x=bad, **world), headers=api.headers, **kw)
                assert r.status_code == 400, (method, path, bad, r.text)
                assert_error(r, 400, code)


def test_v3_assignment_body_ids_that_are_not_guids_are_400(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        r = api.post("/api/v3/promotion-assignments", json={"contactId": "x", "promotionId": world["pid"]})
        assert_error(r, 400, "InvalidContactId")
        r = api.post("/api/v3/promotion-assignments", json={"contactId": world["cid"], "promotionId": "y"})
        assert_error(r, 400, "InvalidPromotionId")


def test_ids_are_accepted_in_any_case_and_answered_lowercase(api: Any, world: dict[str, Any]) -> None:
    upper = world["cid"].upper()
    r = api.get(f"/api/v2/contacts/{upper}")
    assert r.status_code == 200 and r.json()["id"] == world["cid"]
    r = api.get(f"/api/v2/contacts/{{{upper}}}/promotions")
    assert r.status_code == 200 and r.json()[0]["id"] == world["aid"]


def test_an_unknown_channel_is_400_not_a_valid_redemption_channel(api: Any, world: dict[str, Any]) -> None:
    cid, aid = world["cid"], world["aid"]
    with _unchanged(api):
        answers = [
            api.post(f"/api/v2/promotions/codes/{aid}/redeem", json={"redemptionChannel": "SHOP"}),
            api.post(f"/api/v3/promotion-assignments/{aid}/redeem", json="store"),
            api.post(f"/api/v2/contacts/{cid}/promotions/{aid}/redeem", json={"redemptionChannel": "P0S"}),
            api.get(f"/api/v2/contacts/{cid}/promotions?redemptionChannelType=SHOP"),
            api.get(f"/api/v3/promotion-assignments?contactId={cid}&redemptionChannelType=web"),
            api.get(
                f"/api/v2/contacts/{cid}/promotions", headers={**api.headers, "redemptionChannelType": "x"}
            ),
        ]
        for r in answers:
            assert_error(r, 400, "NotAValidRedemptionChannel")


def test_datetimes_without_an_offset_are_400(api: Any, world: dict[str, Any]) -> None:
    with _unchanged(api):
        for value in ("2026-03-10T12:00:00", "2026-03-10", "2026-03-10 12:00"):
            r = api.post(
                f"/api/v2/promotions/codes/{world['aid']}/redeem",
                json={"redemptionChannel": "POS", "redeemedOn": value},
            )
            err = assert_error(r, 400, "InvalidPayload")
            assert "redeemedOn" in err["message"] and "timezone" in err["message"]
        r = api.post("/api/v2/promotions/multichannels", json=promotion_body(start="2026-03-10T08:30:00"))
        assert "validity.startDate" in assert_error(r, 400, "InvalidPayload")["message"]
    # With an offset, an instant is taken to its date in the tenant's zone.
    r = api.post(
        "/api/v2/promotions/multichannels", json=promotion_body(start="2026-03-09T23:30:00+00:00", end=None)
    )
    assert r.status_code == 201 and r.json()["validity"]["startDate"] == "2026-03-10T00:00:00+01:00"


def test_unknown_json_fields_are_ignored(api: Any, world: dict[str, Any]) -> None:
    r = api.post("/api/v2/contacts", json={"email": "u@example.com", "shoeSize": 44, "firstName": "U"})
    assert r.status_code == 201 and "shoeSize" not in r.json()["attributes"]
    body = {**promotion_body(), "colour": "red", "presentation": {"heading": "h", "font": "x"}}
    body["redemptionChannels"][0]["sparkle"] = True
    r = api.post("/api/v2/promotions/multichannels", json=body)
    assert r.status_code == 201 and "colour" not in r.json() and "font" not in r.json()["presentation"]
    r = api.post(
        f"/api/v2/promotions/codes/{world['aid']}/redeem", json={"redemptionChannel": "POS", "tip": 5}
    )
    assert r.status_code == 200 and r.json()["redeemed"] is True
    r = api.post(
        "/api/v3/promotion-assignments",
        json={"contactId": world["cid"], "promotionId": world["pid"], "note": "x"},
    )
    assert r.status_code == 200


# ------------------------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "MissingApiKey"),
        ({"apikey": ""}, "MissingApiKey"),
        ({"Authorization": "Bearer "}, "MissingApiKey"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "MissingApiKey"),
        ({"apikey": "pf_not-a-real-key"}, "InvalidApiKey"),
        ({"Authorization": "Bearer pf_not-a-real-key"}, "InvalidApiKey"),
    ],
)
def test_missing_or_unknown_key_is_401(api: Any, headers: dict[str, str], code: str) -> None:
    with _unchanged(api):
        assert_error(api.client.get("/api/v2/contacts/count", headers=headers), 401, code)
        r = api.client.post("/api/v2/contacts", json={"email": "z@example.com"}, headers=headers)
        assert_error(r, 401, code)


def test_the_key_works_in_apikey_any_case_and_as_bearer(api: Any) -> None:
    key = api.tenant["apiKey"]
    for headers in (
        {"apikey": key},
        {"ApiKey": key},
        {"Authorization": f"Bearer {key}"},
        {"authorization": f"bearer {key}"},
    ):
        assert api.client.get("/api/v2/contacts/count", headers=headers).status_code == 200


def test_a_rotated_key_is_refused_once_the_cache_window_has_passed(api: Any) -> None:
    """A verified key is trusted for `api_key_cache_seconds` (bounded staleness, so authentication costs no query
    per request); after that it is looked up again, and a revoked key is refused."""
    import asyncio
    import time
    from datetime import UTC, datetime

    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService, hash_key

    tenant = api.new_tenant()
    old = {"apikey": tenant["apiKey"]}
    assert api.get("/api/v2/contacts/count", headers=old).status_code == 200

    async def rotate() -> str:
        db = Database(api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                return await TenantService(datetime.now(UTC)).rotate_key(conn, tenant["name"])
        finally:
            await db.dispose()

    new_key = asyncio.run(rotate())
    cache = api.client.app.state.promoflow.key_cache
    ctx, until = cache[hash_key(tenant["apiKey"])]
    assert until - time.monotonic() <= api.settings.api_key_cache_seconds
    assert api.get("/api/v2/contacts/count", headers=old).status_code == 200  # still inside the window
    cache[hash_key(tenant["apiKey"])] = (ctx, time.monotonic())  # the window has passed
    assert_error(api.get("/api/v2/contacts/count", headers=old), 401, "InvalidApiKey")
    assert_error(api.get("/api/v2/contacts/count", headers=old), 401, "InvalidApiKey")
    assert api.get("/api/v2/contacts/count", headers={"apikey": new_key}).status_code == 200


def test_a_key_with_an_ip_allow_list_works_only_from_those_addresses(live: Any) -> None:
    """Over real TCP (the in-process client has no address): the test talks to the server from 127.0.0.1."""
    import asyncio
    from datetime import UTC, datetime

    import httpx

    from promoflow.server.db import Database
    from promoflow.server.tenant.service import TenantService

    tenant = live.new_tenant()

    async def keys() -> tuple[str, str]:
        db = Database(live.db_url, pool_size=1)
        try:
            async with db.write() as conn:
                svc = TenantService(datetime.now(UTC))
                row = await svc.by_name(conn, tenant["name"])
                here = await svc.add_key(conn, row.id, label="till", ip_allowlist="127.0.0.0/8, ::1")
                elsewhere = await svc.add_key(conn, row.id, label="office", ip_allowlist="10.0.0.0/8")
                return here, elsewhere
        finally:
            await db.dispose()

    here, elsewhere = asyncio.run(keys())
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.get("/api/v2/contacts/count", headers={"apikey": here}).status_code == 200
        r = http.get("/api/v2/contacts/count", headers={"apikey": elsewhere})
        assert_error(r, 403, "IpNotAllowed")


def test_health_needs_no_key_and_unknown_paths_are_a3_404(api: Any) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert_error(api.get("/api/v2/nothing-here"), 404, "NotFound")
    assert_error(api.client.delete("/api/v2/contacts/count", headers=api.headers), 405, "MethodNotAllowed")


def test_no_input_here_answers_500(api: Any, world: dict[str, Any]) -> None:
    """A sweep of odd but plausible requests over every write path: each is answered (2xx or 4xx), none is a 500."""
    odd_bodies = [
        b"{}",
        b"null",
        b'""',
        b"0",
        b"[]",
        b'{"redemptionChannel": null}',
        b'{"email": 5}',
        b'"POS"',
    ]
    for method, path in WRITES:
        for body in odd_bodies:
            r = _send(api, method, path.format(**world), body)
            assert r.status_code < 500, (method, path, body, r.text)
            if r.status_code >= 400:
                assert set(r.json()) == {"statusCode", "errorCode", "message"}
    assert uuid.UUID(world["cid"])
