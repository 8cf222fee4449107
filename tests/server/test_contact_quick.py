"""The contact update's quick path (contact/quick.py, PostgreSQL) answers exactly what the routed update answers:
the same body applied to two twin contacts, one through an app with the fast lane and one without, gives the same
answer (ids and the generated member number aside) and the same stored contact; what it does not handle (keys,
unknown attributes, bad values, unknown ids, Idempotency-Key) it leaves to the routed path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.contact.quick import ANSWERED
from promoflow.server.http.app import create_app
from tests.conftest import make_tenant

from ._support import assert_error


def _client(settings: Settings, clock: Any, fast: bool) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"fast_lane": fast}), clock=clock, run_worker=False)
    )


@pytest.fixture
def both(settings: Settings, clock: Any) -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    tenant = make_tenant(settings)
    with _client(settings, clock, True) as fast, _client(settings, clock, False) as routed:
        yield fast, routed, {"apikey": tenant["apiKey"]}


def _answered(client: TestClient) -> int:
    return int(client.app.state.promoflow.extras.get(ANSWERED, 0))  # type: ignore[attr-defined]


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    out = {**body, "id": "-", "attributes": {**body["attributes"]}}
    out["attributes"].pop("memberNumber", None)
    out["attributes"].pop("email", None)
    return out


PLAIN = [
    {"firstName": " Ada ", "lastName": "Lovelace", "city": "Lund"},
    {"lastName": None, "city": "", "zipCode": "22100", "birthDay": "1815-12-10"},
    {"preferences": {"acceptsEmail": True, "acceptsSms": None}},
    {"firstName": "Ada", "preferences": {"acceptsSms": False}, "memberStatus": 3, "gender": True},
    {},
]
DECLINED = [
    {"contactType": "Contact"},
    {"favouriteColour": "teal"},  # unknown: the routed path names it
]


def test_plain_updates_answer_the_same_on_both_paths(both: Any, settings: Settings) -> None:
    fast, routed, headers = both
    pg = settings.resolved_database_url().startswith("postgresql")
    a = fast.post(
        "/api/v3/contacts", json={"email": "a@example.com", "city": "Malmö"}, headers=headers
    ).json()
    b = routed.post(
        "/api/v3/contacts", json={"email": "b@example.com", "city": "Malmö"}, headers=headers
    ).json()
    for body in PLAIN + DECLINED:
        for path, method in (("/api/v2/contacts/{}", "POST"), ("/api/v3/contacts/{}", "PATCH")):
            before = _answered(fast)
            fa = fast.request(method, path.format(a["id"]), json=body, headers=headers)
            ra = routed.request(method, path.format(b["id"]), json=body, headers=headers)
            assert fa.status_code == ra.status_code == 200, (fa.text, ra.text)
            assert _comparable(fa.json()) == _comparable(ra.json()), body
            assert fa.headers.get("Promoflow-Warnings") == ra.headers.get("Promoflow-Warnings")
            took = _answered(fast) - before
            assert took == (1 if pg and body in PLAIN else 0), body
        stored_a = routed.get(f"/api/v3/contacts/{a['id']}", headers=headers).json()
        stored_b = routed.get(f"/api/v3/contacts/{b['id']}", headers=headers).json()
        assert _comparable(stored_a) == _comparable(stored_b)


def test_refusals_and_replays_go_to_the_routed_path(both: Any) -> None:
    fast, _, headers = both
    c = fast.post("/api/v2/contacts", json={"email": "c@example.com"}, headers=headers).json()
    assert_error(fast.post(f"/api/v2/contacts/{c['id']}", json={"firstName": {"x": 1}}, headers=headers),
                 400, "InvalidAttributeValue")  # fmt: skip
    assert_error(fast.post(f"/api/v2/contacts/{c['id']}", json={"preferences": "yes"}, headers=headers),
                 400, "InvalidPayload")  # fmt: skip
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(
        fast.post(f"/api/v2/contacts/{unknown}", json={"city": "X"}, headers=headers), 404, "ContactNotFound"
    )
    assert_error(
        fast.post("/api/v2/contacts/nope", json={"city": "X"}, headers=headers), 400, "InvalidContactId"
    )
    other = make_tenant(fast.app.state.promoflow.settings)  # type: ignore[attr-defined]
    r = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "X"}, headers={"apikey": other["apiKey"]})
    assert_error(r, 404, "ContactNotFound")
    for key in ({"email": "new@example.com"}, {"mobilePhone": "+46701234567"}, {"memberNumber": "M-1"}):
        before = _answered(fast)  # a key may conflict and fires contact_changed: the routed path answers
        r = fast.post(f"/api/v2/contacts/{c['id']}", json=key, headers=headers)
        assert r.status_code == 200 and _answered(fast) == before
        assert set(key.values()) <= set(r.json()["attributes"].values())
    h = {**headers, "Idempotency-Key": "q-1"}
    first = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "Y"}, headers=h)
    again = fast.post(f"/api/v2/contacts/{c['id']}", json={"city": "Y"}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
