"""Bad receipts get a specific A3 error and store nothing; amounts that differ only by rounding are accepted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.receipt.conftest import Flow, assert_error, item, receipt_body

EMAIL = "val@example.com"
NOTHING = {"receipt": 0, "pending": 0, "links": 0, "store": 0}


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _set(body: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


CASES = [
    # (name, mutate(body) -> body, status, errorCode, text in message)
    ("no contact", lambda b: _without(b, "contact"), 400, "InvalidPayload", "contact"),
    ("no matchKey", lambda b: _without(b, "contact", "matchKey"), 400, "InvalidPayload", "contact.matchKey"),
    ("no uniqueReceiptId", lambda b: _without(b, "uniqueReceiptId"), 400, "InvalidPayload", "uniqueReceiptId"),
    ("no createdDate", lambda b: _without(b, "createdDate"), 400, "InvalidPayload", "createdDate"),
    ("no store", lambda b: _without(b, "storeExternalId"), 400, "InvalidPayload", "storeExternalId"),
    ("no currency", lambda b: _without(b, "currency"), 400, "InvalidPayload", "currency"),
    ("no total", lambda b: _without(b, "totalGrossPrice"), 400, "InvalidPayload", "totalGrossPrice"),
    ("no items", lambda b: _without(b, "items"), 400, "InvalidPayload", "items"),
    ("empty items", lambda b: _set(b, [], "items"), 400, "InvalidPayload", "items"),
    ("no payments", lambda b: _without(b, "paymentMethods"), 400, "InvalidPayload", "paymentMethods"),
    ("no line price", lambda b: _without(b, "items", 0, "grossPaidPrice"), 400, "InvalidPayload",
     "items[0].grossPaidPrice"),
    ("total not a number", lambda b: _set(b, "lots", "totalGrossPrice"), 400, "InvalidPayload", "totalGrossPrice"),
    ("quantity not a number", lambda b: _set(b, "two", "items", 1, "quantity"), 400, "InvalidPayload",
     "items[1].quantity"),
    ("items not a list", lambda b: _set(b, {"sku": "A"}, "items"), 400, "InvalidPayload", "items"),
    ("unknown item type", lambda b: _set(b, "GIFT", "items", 0, "type"), 400, "InvalidPayload", "items[0].type"),
    ("date without offset", lambda b: _set(b, "2026-03-10T13:00:00", "createdDate"), 400, "InvalidPayload",
     "createdDate"),
    ("date only", lambda b: _set(b, "2026-03-10", "createdDate"), 400, "InvalidPayload", "createdDate"),
    ("lines do not add up", lambda b: _set(b, 170.0, "totalGrossPrice"), 400, "ReceiptTotalMismatch", "170"),
    ("payments do not add up", lambda b: _set(b, [{"type": "card", "value": 140}], "paymentMethods"), 400,
     "PaymentTotalMismatch", "140"),
    ("unknown matchKeyType", lambda b: _set(b, "cardId", "contact", "matchKeyType"), 400, "InvalidMatchKeyType",
     "cardId"),
    ("bad email key", lambda b: _set(b, "not-an-email", "contact", "matchKey"), 400, "InvalidEmailAddress", ""),
    ("bad contactId key", lambda b: _set(b, {"matchKey": "123", "matchKeyType": "contactId"}, "contact"), 400,
     "InvalidContactId", "123"),
    ("unknown contactType", lambda b: _set(b, "Robot", "contact", "contactType"), 400, "InvalidContactType", ""),
    ("future sale", lambda b: _set(b, "2026-03-11T13:00:00+01:00", "createdDate"), 400, "InvalidCreatedDate", ""),
    ("bad currency", lambda b: _set(b, "S1K", "currency"), 400, "InvalidCurrency", "S1K"),
    ("two-letter currency", lambda b: _set(b, "SE", "currency"), 400, "InvalidCurrency", "SE"),
    ("four-letter currency", lambda b: _set(b, "SEKK", "currency"), 400, "InvalidCurrency", "SEKK"),
    ("non-ASCII currency", lambda b: _set(b, "SÉK", "currency"), 400, "InvalidCurrency", "SÉK"),
    ("absurd amount", lambda b: _set(_set(_set(b, 1e15, "totalGrossPrice"), 1e15, "items", 0, "grossPaidPrice"),
                                      [{"type": "card", "value": 1e15}], "paymentMethods"), 400, "InvalidAmount", ""),
    ("return of itself", lambda b: _set(b, b["uniqueReceiptId"], "originalUniqueReceiptId"), 400,
     "InvalidOriginalReceipt", ""),
]  # fmt: skip


@pytest.mark.parametrize(("name", "mutate", "status", "code", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_receipt_is_refused_and_stores_nothing(flow: Flow, name: str, mutate: Any, status: int, code: str,
                                                   text: str) -> None:  # fmt: skip
    flow.contact(EMAIL)
    body = mutate(receipt_body(key=EMAIL))
    err = assert_error(flow.send(body), status, code)
    assert text in err["message"]
    assert flow.tenant_rows() == NOTHING


def test_not_json_and_wrong_content_type_are_refused(flow: Flow) -> None:
    r = flow.api.post("/api/v2/receipts", content=b"{not json", headers={**flow.api.headers,
                                                                          "Content-Type": "application/json"})  # fmt: skip
    assert_error(r, 400, "InvalidJson")
    r = flow.api.post("/api/v2/receipts", content=b"a=1", headers={**flow.api.headers,
                                                                    "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert_error(r, 415, "UnsupportedMediaType")
    assert_error(flow.api.post("/api/v2/receipts", json=[1, 2]), 400, "InvalidPayload")
    assert flow.tenant_rows() == NOTHING


def test_rounding_differences_within_tolerance_are_accepted(flow: Flow) -> None:
    flow.contact(EMAIL)
    # Three lines may each be a cent off: 0.03 is accepted; cash rounded to whole kronor (0.40) too.
    body = receipt_body(
        key=EMAIL, items=[item("33.33", sku="A"), item("33.33", sku="B"), item("33.33", sku="C")]
    )
    body["totalGrossPrice"] = 100.02
    body["paymentMethods"] = [{"type": "cash", "value": 100}]
    r = flow.send(body)
    assert r.status_code == 200 and r.json()["status"] == "Created", r.text
    over = receipt_body(
        key=EMAIL, items=[item("33.33", sku="A"), item("33.33", sku="B"), item("33.33", sku="C")]
    )
    over["totalGrossPrice"] = 100.03  # 0.04 off over three lines
    over["paymentMethods"] = [{"type": "cash", "value": 100.03}]
    assert_error(flow.send(over), 400, "ReceiptTotalMismatch")


def test_return_receipt_counts_its_lines_negative(flow: Flow) -> None:
    """Engage's own return example: quantity -2, grossPaidPrice 400 (positive), totalGrossPrice -400."""
    flow.contact(EMAIL)
    body = receipt_body(key=EMAIL, items=[item("400.00", sku="JACKET", qty=-2, type_="RETURN")])
    assert body["totalGrossPrice"] == -400.0
    r = flow.send(body)
    assert r.status_code == 200 and r.json()["status"] == "Created", r.text
    positive = receipt_body(key=EMAIL, items=[item("400.00", sku="JACKET", qty=-2, type_="RETURN")])
    positive["totalGrossPrice"] = 400.0
    positive["paymentMethods"] = [{"type": "card", "value": 400.0}]
    assert_error(flow.send(positive), 400, "ReceiptTotalMismatch")
