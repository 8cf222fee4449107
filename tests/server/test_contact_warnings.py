"""Unknown contact attributes (issue 11 §8): ignored as Engage ignores them, but never in silence — named in the
`Promoflow-Warnings` header (v2 and v3) and in the v3 body's `warnings`; the stored contact is the same as without
them."""

from __future__ import annotations

import json
from typing import Any

from ._support import new_contact

HEADER = "Promoflow-Warnings"


def _named(response: Any) -> list[str]:
    warnings = json.loads(response.headers[HEADER])
    assert isinstance(warnings, list) and len(warnings) == 1
    assert warnings[0].startswith("UnknownAttribute:")
    return list(warnings)


def test_a_v2_create_with_unknown_attributes_stores_the_rest_and_names_them_in_a_header(api: Any) -> None:
    r = api.post("/api/v2/contacts", json={"email": "ada@example.com", "firstNmae": "Ada", "shoeSize": 38})
    assert r.status_code == 201, r.text
    (warning,) = _named(r)
    assert "'firstNmae'" in warning and "'shoeSize'" in warning
    body = r.json()
    assert "warnings" not in body  # v2 answers stay Engage's IApiContact
    assert "firstNmae" not in body["attributes"] and "shoeSize" not in body["attributes"]
    assert api.get(f"/api/v2/contacts/{body['id']}").json() == body


def test_v3_create_and_both_updates_carry_the_warnings(api: Any) -> None:
    r = api.post("/api/v3/contacts", json={"email": "bo@example.com", "favouriteColour": "teal"})
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == _named(r)
    assert "'favouriteColour'" in r.json()["warnings"][0]
    cid = r.json()["id"]

    r = api.post(f"/api/v2/contacts/{cid}", json={"lastName": "Berg", "nickname": "B"})
    assert r.status_code == 200, r.text
    assert "'nickname'" in _named(r)[0] and "warnings" not in r.json()
    assert r.json()["attributes"]["lastName"] == "Berg"

    r = api.patch(f"/api/v3/contacts/{cid}", json={"city": "Lund", "citty": "Lund"})
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == _named(r) and "'citty'" in r.json()["warnings"][0]
    stored = api.get(f"/api/v3/contacts/{cid}").json()
    assert "warnings" not in stored
    assert stored["attributes"] == {
        "email": "bo@example.com", "memberNumber": stored["attributes"]["memberNumber"],
        "lastName": "Berg", "city": "Lund",
    }  # fmt: skip


def test_a_clean_body_has_no_warnings(api: Any) -> None:
    r = api.post("/api/v3/contacts", json={"email": "c@example.com", "contactType": "Member",
                                            "preferences": {"acceptsSms": True}})  # fmt: skip
    assert r.status_code == 201 and HEADER not in r.headers and "warnings" not in r.json()
    r = api.post(f"/api/v2/contacts/{r.json()['id']}", json={"firstName": "C", "contactType": "Member"})
    assert r.status_code == 200 and HEADER not in r.headers


def test_the_header_is_ascii_and_bounded(api: Any) -> None:
    c = new_contact(api, email="d@example.com")
    odd = {f"x\u00e5\u2603{i}": i for i in range(50)}
    r = api.post(f"/api/v2/contacts/{c['id']}", json={"firstName": "D", **odd})
    assert r.status_code == 200, r.text
    raw = r.headers[HEADER]
    assert raw.isascii() and len(raw) < 2000
    (warning,) = json.loads(raw)
    assert "x\u00e5\u26030" in warning and warning.endswith("and 30 more")


def test_an_idempotent_replay_carries_the_same_warnings(api: Any) -> None:
    h = {**api.headers, "Idempotency-Key": "warn-1"}
    first = api.post("/api/v3/contacts", json={"email": "e@example.com", "zodiac": "leo"}, headers=h)
    again = api.post("/api/v3/contacts", json={"email": "e@example.com", "zodiac": "leo"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json() and again.headers[HEADER] == first.headers[HEADER]
