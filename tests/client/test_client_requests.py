"""Request shapes for v2 and v3 (paths, headers, bodies) and response parsing, over httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from promoflow import __version__
from promoflow.client import (
    AsyncEngageClient,
    CallOutcome,
    EngageClient,
    InvalidResponseError,
    NotFoundError,
    RetryPolicy,
)
from promoflow.wire.engage import Receipt

CONTACT_ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
ASSIGNMENT_ID = "11111111-2222-4333-8444-555555555555"
TEMPLATE_ID = "99999999-8888-4777-8666-555555555555"

CONTACT = {
    "id": CONTACT_ID,
    "contactType": "Member",
    "attributes": {"email": "a@example.com"},
    "preferences": {},
    "meta": {},
}


def promotion(assignment_id: str = ASSIGNMENT_ID, *, redeemed: bool = False) -> dict[str, Any]:
    return {
        "id": assignment_id,
        "promotionId": TEMPLATE_ID,
        "name": "20% off",
        "redeemed": redeemed,
        "redemptionChannels": [{"type": "POS", "valueType": "PERCENT", "value": 20}],
    }


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def answer(body: Any = None, status: int = 200, raw: bytes | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if raw is not None:
            return httpx.Response(status, content=raw)
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    return handler


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[EngageClient, Recorder]]]:
    clients: list[EngageClient] = []

    def make(handler: Handler, **options: Any) -> tuple[EngageClient, Recorder]:
        recorder = Recorder(handler)
        options.setdefault("retry", RetryPolicy.never())
        client = EngageClient(
            "https://engage.example/", "secret-key", transport=httpx.MockTransport(recorder), **options
        )
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        client.close()


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


# --------------------------------------------------------------------------------------------------- headers


def test_default_headers(make_client: Any) -> None:
    client, recorder = make_client(answer(5))
    assert client.count_contacts() == 5
    request = recorder.last
    assert request.method == "GET"
    assert request.url == "https://engage.example/api/v2/contacts/count"
    assert request.headers["apikey"] == "secret-key"
    assert request.headers["user-agent"] == f"promoflow-sdk/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert "idempotency-key" not in request.headers


def test_bearer_and_custom_user_agent(make_client: Any) -> None:
    client, recorder = make_client(answer(1), auth_header="bearer", user_agent="AcmePOS/1.5")
    client.count_contacts()
    assert recorder.last.headers["authorization"] == "Bearer secret-key"
    assert "apikey" not in recorder.last.headers
    assert recorder.last.headers["user-agent"] == "AcmePOS/1.5"


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        EngageClient("https://x", "")
    with pytest.raises(ValueError):
        EngageClient("https://x", "k", api_version=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EngageClient("https://x", "k", auth_header="basic")  # type: ignore[arg-type]


def test_base_url_with_a_path_prefix(make_client: Any) -> None:
    recorder = Recorder(answer(3))
    with EngageClient("https://proxy.example/engage", "k", transport=httpx.MockTransport(recorder)) as client:
        client.count_contacts()
    assert recorder.last.url == "https://proxy.example/engage/api/v2/contacts/count"


@pytest.mark.parametrize(
    ("given", "version", "expected"),
    [
        ("https://engage.example/api/v2", None, "https://engage.example/api/v2/contacts/count"),
        ("https://engage.example/api/v2/", 2, "https://engage.example/api/v2/contacts/count"),
        ("https://engage.example/engage/API/V3", None, "https://engage.example/engage/api/v2/contacts/count"),
    ],
)
def test_a_base_url_ending_in_the_api_version_is_the_servers_root(
    given: str, version: Any, expected: str
) -> None:
    # Copied from Engage's docs with its /api/vN: accepted; the suffix selects the version unless told.
    recorder = Recorder(answer(3))
    with EngageClient(given, "k", api_version=version, transport=httpx.MockTransport(recorder)) as client:
        assert client.count_contacts() == 3  # count is v2-only in Engage: always /api/v2
        assert client.api_version == (3 if given.lower().endswith("v3") else 2)
        assert not client.base_url.lower().endswith(("/api/v2", "/api/v3"))
    assert str(recorder.last.url) == expected


def test_a_base_url_version_that_contradicts_api_version_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"ends in /api/v3 but api_version=2.*https://engage\.example\)"):
        EngageClient("https://engage.example/api/v3", "k", api_version=2)


# -------------------------------------------------------------------------------------------------- contacts


@pytest.mark.parametrize("version", [2, 3])
def test_lookup_contact_id(make_client: Any, version: int) -> None:
    client, recorder = make_client(answer(CONTACT_ID.upper()), api_version=version)
    found = client.lookup_contact_id(
        email="a@example.com", mobile_phone="+46701234567", contact_type="Member"
    )
    assert found == CONTACT_ID
    request = recorder.last
    assert request.url.path == f"/api/v{version}/contacts/id"
    assert dict(request.url.params) == {
        "email": "a@example.com",
        "mobilePhone": "+46701234567",
        "contactType": "Member",
    }


def test_lookup_every_key_name(make_client: Any) -> None:
    client, recorder = make_client(answer(CONTACT_ID))
    client.lookup_contact_id(social_security_number="199001011234", custom_key="M-1", any="x")
    assert dict(recorder.last.url.params) == {
        "socialSecurityNumber": "199001011234",
        "customKey": "M-1",
        "any": "x",
    }


def test_lookup_not_found_is_none(make_client: Any) -> None:
    client, _ = make_client(
        answer({"statusCode": 404, "errorCode": "ContactNotFound", "message": "no"}, status=404)
    )
    assert client.lookup_contact_id(email="nobody@example.com") is None


def test_lookup_bare_404_is_none_but_other_404_codes_raise(make_client: Any) -> None:
    client, _ = make_client(answer(status=404))
    assert client.lookup_contact_id(email="x@example.com") is None
    for body in ({"statusCode": 404, "errorCode": "NotFound", "message": "Not Found"}, "<html>404</html>"):
        client, _ = make_client(answer(body, status=404))
        with pytest.raises(NotFoundError):
            client.lookup_contact_id(email="x@example.com")


def test_lookup_needs_a_key(make_client: Any) -> None:
    client, recorder = make_client(answer(CONTACT_ID))
    with pytest.raises(ValueError):
        client.lookup_contact_id(contact_type="Member")
    assert recorder.requests == []


def test_lookup_rejects_a_non_string_body(make_client: Any) -> None:
    client, _ = make_client(answer([1]))
    with pytest.raises(InvalidResponseError):
        client.lookup_contact_id(email="a@example.com")


@pytest.mark.parametrize("version", [2, 3])
def test_get_contact(make_client: Any, version: int) -> None:
    client, recorder = make_client(answer(CONTACT), api_version=version)
    contact = client.get_contact(CONTACT_ID)
    assert contact.id == CONTACT_ID
    assert recorder.last.url.path == f"/api/v{version}/contacts/{CONTACT_ID}"


def test_ids_are_quoted_into_paths(make_client: Any) -> None:
    client, recorder = make_client(answer(CONTACT))
    client.get_contact("../admin?x=1")
    assert recorder.last.url.raw_path == b"/api/v2/contacts/..%2Fadmin%3Fx%3D1"


def test_create_contact_v2_sends_source_as_headers(make_client: Any) -> None:
    client, recorder = make_client(answer(CONTACT, status=201))
    contact = client.create_contact(
        {"email": "a@example.com", "firstName": "Ada"},
        contact_type="Member",
        preferences={"acceptsEmail": True},
        source="POS",
        store_external_id="store-1",
    )
    assert contact.attributes["email"] == "a@example.com"
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", "/api/v2/contacts")
    assert request.headers["source"] == "POS"
    assert request.headers["storeexternalid"] == "store-1"
    assert not request.url.params
    assert body_of(request) == {
        "email": "a@example.com",
        "firstName": "Ada",
        "contactType": "Member",
        "preferences": {"acceptsEmail": True},
    }
    assert request.headers["idempotency-key"]


def test_create_contact_v3_sends_source_as_query(make_client: Any) -> None:
    client, recorder = make_client(answer(CONTACT, status=201), api_version=3)
    client.create_contact({"email": "a@example.com"}, source="ECOM", store_external_id="web")
    request = recorder.last
    assert request.url.path == "/api/v3/contacts"
    assert dict(request.url.params) == {"source": "ECOM", "storeExternalId": "web"}
    assert "source" not in request.headers
    assert body_of(request) == {"email": "a@example.com"}


def test_create_contact_answered_with_a_guid_fetches_the_contact(make_client: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=CONTACT_ID)
        return httpx.Response(200, json=CONTACT)

    client, recorder = make_client(handler)
    contact = client.create_contact({"email": "a@example.com"})
    assert contact.id == CONTACT_ID
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/api/v2/contacts"),
        ("GET", f"/api/v2/contacts/{CONTACT_ID}"),
    ]


@pytest.mark.parametrize(("version", "method"), [(2, "POST"), (3, "PATCH")])
def test_update_contact(make_client: Any, version: int, method: str) -> None:
    client, recorder = make_client(answer(CONTACT), api_version=version)
    client.update_contact(CONTACT_ID, {"firstName": "Ada", "mobilePhone": None})
    request = recorder.last
    assert (request.method, request.url.path) == (method, f"/api/v{version}/contacts/{CONTACT_ID}")
    assert body_of(request) == {"firstName": "Ada", "mobilePhone": None}


def test_update_contact_with_an_empty_answer_reads_the_contact(make_client: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204) if request.method == "POST" else httpx.Response(200, json=CONTACT)

    client, recorder = make_client(handler)
    assert client.update_contact(CONTACT_ID, {"firstName": "Ada"}).id == CONTACT_ID
    assert [r.method for r in recorder.requests] == ["POST", "GET"]


def test_count_contacts_tolerates_a_string(make_client: Any) -> None:
    client, _ = make_client(answer("42"))
    assert client.count_contacts() == 42
    client, _ = make_client(answer({"count": 1}))
    with pytest.raises(InvalidResponseError):
        client.count_contacts()


def test_non_json_success_is_an_invalid_response(make_client: Any) -> None:
    client, _ = make_client(answer(raw=b"<html>login</html>"))
    with pytest.raises(InvalidResponseError) as caught:
        client.get_contact(CONTACT_ID)
    assert caught.value.status == 200
    assert caught.value.body == "<html>login</html>"


# ------------------------------------------------------------------------------------------------ promotions


def test_list_promotions_v2(make_client: Any) -> None:
    client, recorder = make_client(answer([promotion()]))
    promotions = client.list_promotions(CONTACT_ID, "pos")
    assert [p.id for p in promotions] == [ASSIGNMENT_ID]
    request = recorder.last
    assert request.url.path == f"/api/v2/contacts/{CONTACT_ID}/promotions"
    assert dict(request.url.params) == {"redemptionChannelType": "POS"}


def test_list_promotions_without_channel(make_client: Any) -> None:
    client, recorder = make_client(answer([]))
    assert client.list_promotions(CONTACT_ID) == []
    assert not recorder.last.url.params


@pytest.mark.parametrize("shape", ["array", "page"])
def test_list_promotions_v3(make_client: Any, shape: str) -> None:
    items = [promotion()]
    body = items if shape == "array" else {"items": items, "totalCount": 1, "offset": 0, "count": 1}
    client, recorder = make_client(answer(body), api_version=3)
    assert len(client.list_promotions(CONTACT_ID, "ECOM")) == 1
    request = recorder.last
    assert request.url.path == "/api/v3/promotion-assignments"
    assert dict(request.url.params) == {"contactId": CONTACT_ID, "redemptionChannelType": "ECOM"}


def test_list_promotions_rejects_other_shapes(make_client: Any) -> None:
    client, _ = make_client(answer({"nothing": True}))
    with pytest.raises(InvalidResponseError):
        client.list_promotions(CONTACT_ID)


@pytest.mark.parametrize(("version", "path"), [(2, f"/api/v2/contacts/{CONTACT_ID}/promotions"), (3, None)])
def test_get_promotion_state_filters_by_id(make_client: Any, version: int, path: str | None) -> None:
    other = str(uuid.uuid4())
    items = [promotion(other), promotion(ASSIGNMENT_ID.upper(), redeemed=True)]
    client, recorder = make_client(answer(items), api_version=version)
    state = client.get_promotion_state(CONTACT_ID, ASSIGNMENT_ID)
    assert state is not None and state.redeemed
    assert recorder.last.url.params["includeRedeemed"] == "true"
    assert recorder.last.url.path == (path or "/api/v3/promotion-assignments")
    assert client.get_promotion_state(CONTACT_ID, str(uuid.uuid4())) is None


@pytest.mark.parametrize(
    ("version", "contact_id", "path", "expected"),
    [
        (2, CONTACT_ID, "auto", f"/api/v2/contacts/{CONTACT_ID}/promotions/{ASSIGNMENT_ID}/redeem"),
        (2, None, "auto", f"/api/v2/promotions/codes/{ASSIGNMENT_ID}/redeem"),
        (2, CONTACT_ID, "v2-code", f"/api/v2/promotions/codes/{ASSIGNMENT_ID}/redeem"),
        (3, CONTACT_ID, "auto", f"/api/v3/promotion-assignments/{ASSIGNMENT_ID}/redeem"),
        (3, None, "auto", f"/api/v3/promotion-assignments/{ASSIGNMENT_ID}/redeem"),
        (2, None, "v3", f"/api/v3/promotion-assignments/{ASSIGNMENT_ID}/redeem"),
        (3, CONTACT_ID, "v2-contact", f"/api/v2/contacts/{CONTACT_ID}/promotions/{ASSIGNMENT_ID}/redeem"),
    ],
)
def test_redeem_paths(
    make_client: Any, version: int, contact_id: str | None, path: str, expected: str
) -> None:
    client, recorder = make_client(answer(promotion(redeemed=True)), api_version=version)
    redeemed = client.redeem(ASSIGNMENT_ID, "pos", contact_id, path=path)
    assert redeemed is not None and redeemed.redeemed
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", expected)
    assert body_of(request) == {"redemptionChannel": "POS"}


def test_redeem_v2_contact_path_needs_a_contact(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion()))
    with pytest.raises(ValueError):
        client.redeem(ASSIGNMENT_ID, "POS", path="v2-contact")
    assert recorder.requests == []


def test_redeem_extension_fields(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion(redeemed=True)))
    when = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    client.redeem(
        ASSIGNMENT_ID,
        "ECOM",
        CONTACT_ID,
        redeemed_on=when,
        store_external_id="web-1",
        unique_receipt_id="R-1",
    )
    assert body_of(recorder.last) == {
        "redemptionChannel": "ECOM",
        "redeemedOn": "2025-03-01T12:30:00Z",
        "storeExternalId": "web-1",
        "uniqueReceiptId": "R-1",
    }


def test_redeem_refuses_a_naive_time(make_client: Any) -> None:
    client, _ = make_client(answer(promotion()))
    with pytest.raises(ValueError):
        client.redeem(ASSIGNMENT_ID, "POS", redeemed_on=datetime(2025, 3, 1))


@pytest.mark.parametrize("body", [None, {"statusCode": "OK"}, "done"])
def test_redeem_with_an_unfamiliar_success_body_returns_none(make_client: Any, body: Any) -> None:
    client, _ = make_client(answer(body))
    assert client.redeem(ASSIGNMENT_ID, "POS") is None


def test_assign_v2(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion()))
    assigned = client.assign(CONTACT_ID, TEMPLATE_ID)
    assert assigned.promotion_id == TEMPLATE_ID
    request = recorder.last
    assert (request.method, request.url.path) == (
        "POST",
        f"/api/v2/contacts/{CONTACT_ID}/promotions/{TEMPLATE_ID}/assign",
    )
    assert request.content == b""
    assert request.headers["idempotency-key"]


def test_assign_v3(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion()), api_version=3)
    client.assign(CONTACT_ID, TEMPLATE_ID)
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", "/api/v3/promotion-assignments")
    assert body_of(request) == {"contactId": CONTACT_ID, "promotionId": TEMPLATE_ID}


# -------------------------------------------------------------------------------------------------- receipts


def receipt() -> Receipt:
    return Receipt.model_validate(
        {
            "contact": {"matchKey": CONTACT_ID, "matchKeyType": "ContactId"},
            "uniqueReceiptId": "R-1",
            "createdDate": "2025-03-01T12:30:00+01:00",
            "storeExternalId": "store-1",
            "currency": "SEK",
            "totalGrossPrice": Decimal("80.50"),
            "paymentMethods": [{"type": "card", "value": Decimal("80.50")}],
            "items": [
                {
                    "sku": "A",
                    "quantity": 1,
                    "grossPaidPrice": Decimal("80.50"),
                    "discounts": [{"value": Decimal("-20.00"), "type": "PERCENT", "description": "20% off"}],
                }
            ],
            "usedPromotions": [{"couponId": ASSIGNMENT_ID}],
        }
    )


@pytest.mark.parametrize("version", [2, 3])
def test_send_receipt(make_client: Any, version: int) -> None:
    client, recorder = make_client(
        answer({"uniqueReceiptId": "R-1", "status": "Created"}), api_version=version
    )
    result = client.send_receipt(receipt())
    assert (result.unique_receipt_id, result.status) == ("R-1", "Created")
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", f"/api/v{version}/receipts")
    sent = body_of(request)
    assert sent["totalGrossPrice"] == 80.5
    assert sent["items"][0]["discounts"] == [{"value": -20, "type": "PERCENT", "description": "20% off"}]
    assert sent["usedPromotions"] == [{"couponId": ASSIGNMENT_ID}]
    assert "receiptNumber" not in sent  # optional fields are left out, not sent as null


def test_send_receipt_with_an_empty_answer(make_client: Any) -> None:
    client, _ = make_client(answer(status=202))
    result = client.send_receipt(receipt())
    assert (result.unique_receipt_id, result.status) == ("R-1", "Accepted")


# ----------------------------------------------------------------------------------------- idempotency keys


def test_state_changing_calls_get_a_fresh_uuid4_key_each(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion(redeemed=True)))
    outcome = CallOutcome()
    client.redeem(ASSIGNMENT_ID, "POS", outcome=outcome)
    client.redeem(ASSIGNMENT_ID, "POS")
    first, second = (r.headers["idempotency-key"] for r in recorder.requests)
    assert uuid.UUID(first).version == 4
    assert first != second
    assert outcome.idempotency_key == first
    assert (outcome.attempts, outcome.settled_by, outcome.status_code) == (1, "response", 200)


def test_caller_key_is_used(make_client: Any) -> None:
    client, recorder = make_client(answer(promotion(redeemed=True)))
    client.redeem(ASSIGNMENT_ID, "POS", idempotency_key="order-17/line-2")
    assert recorder.last.headers["idempotency-key"] == "order-17/line-2"
    with pytest.raises(ValueError):
        client.redeem(ASSIGNMENT_ID, "POS", idempotency_key="")
    with pytest.raises(ValueError):
        client.redeem(ASSIGNMENT_ID, "POS", idempotency_key="k" * 256)


def test_reads_carry_no_key(make_client: Any) -> None:
    client, recorder = make_client(answer([promotion()]))
    client.list_promotions(CONTACT_ID, "POS")
    assert "idempotency-key" not in recorder.last.headers


# --------------------------------------------------------------------------------------------------- async


def test_async_client_builds_the_same_requests() -> None:
    sync_recorder = Recorder(answer(promotion(redeemed=True)))
    async_recorder = Recorder(answer(promotion(redeemed=True)))
    key = "same-key"
    with EngageClient(
        "https://engage.example", "k", api_version=3, transport=httpx.MockTransport(sync_recorder)
    ) as client:
        client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, idempotency_key=key)

    async def run() -> None:
        async with AsyncEngageClient(
            "https://engage.example", "k", api_version=3, transport=httpx.MockTransport(async_recorder)
        ) as client:
            redeemed = await client.redeem(ASSIGNMENT_ID, "POS", CONTACT_ID, idempotency_key=key)
            assert redeemed is not None and redeemed.redeemed

    asyncio.run(run())
    sent, async_sent = sync_recorder.last, async_recorder.last
    assert (sent.method, sent.url, sent.content) == (async_sent.method, async_sent.url, async_sent.content)
    assert dict(sent.headers) == dict(async_sent.headers)
