"""Property-based fuzz of every operation of the OpenAPI document, against a live `promoflow serve` on SQLite and on
PostgreSQL (where the fast lane and the quick receipt path answer too).

schemathesis generates requests from the document — valid ones, invalid ones (negative mode), and valid ones whose
ids name a seeded contact, promotion, assignment, receipt, store and job of the tenant, so paths reach existing
objects and not only 404s — and the same with nasty values (lone surrogates, NUL, huge texts and numbers) in their bodies — and sends them
with the tenant's real API key. Every answer must:

- not be a 5xx;
- have a status the document lists for the operation, with a body matching the documented schema and content type;
- if it is an error, be ``{statusCode, errorCode, message}`` with an errorCode the document lists for that status.

The run is short by default: ``PROMOFLOW_FUZZ_EXAMPLES`` (default 25) examples per operation (receipts, slow to
generate, a third of that). ``PROMOFLOW_FUZZ_EXAMPLES=1000`` is a long run. The examples are derandomized (the same
run every time) unless ``PROMOFLOW_FUZZ_SEED`` is set (to anything: a new random run each time).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app

from ._support import new_contact, new_promotion

EXAMPLES = int(os.environ.get("PROMOFLOW_FUZZ_EXAMPLES", "25"))
# Receipt bodies are large (up to 5,000 items, and unknown fields are allowed, so generated ones carry many):
# about half a second each to generate on this machine, so they get a third of the examples.
SLOW = {"/api/v2/receipts", "/api/v3/receipts"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        return create_app(Settings(data_dir=data_dir)).openapi()


DOC = _document()
OPERATIONS = [(method.upper(), path) for path, ops in DOC["paths"].items() for method in ops]
SCHEMA = schemathesis.openapi.from_dict(DOC)


def _documented_examples(method: str, path: str) -> list[Any]:
    """The request body examples the document gives for an operation (on the body or its schema)."""
    content = (
        DOC["paths"][path][method.lower()]
        .get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
    )
    schema = content.get("schema", {})
    found = list(content.get("examples") or [])
    for candidate in (schema, *schema.get("anyOf", ())):
        if "$ref" in candidate:
            candidate = DOC["components"]["schemas"][candidate["$ref"].rsplit("/", 1)[1]]
        found += candidate.get("examples", [])
    return found


EXAMPLE_BODIES = {(m, p): _documented_examples(m, p) for m, p in OPERATIONS}


@dataclass
class World:
    """A tenant with one of everything, made through the API."""

    key: str
    contact_id: str
    promotion_id: str
    draft_id: str
    assignment_id: str
    redeemed_id: str
    job_id: str
    store: str
    receipt_id: str

    @property
    def promotion_refs(self) -> list[str]:
        # Definition ids and assignment ids both go into parameters named promotion_id (Engage's naming).
        return [self.promotion_id, self.draft_id, self.assignment_id, self.redeemed_id]


@pytest.fixture
def world(live: Any) -> Iterator[World]:
    tenant = live.new_tenant()
    with live.client(tenant) as http:
        cid = new_contact(http, firstName="Fuzz")["id"]
        pid = new_promotion(
            http,
            start="2026-01-01",
            end="2099-12-31",
            external_id="FUZZ",
            channels=[
                {"type": "POS", "valueType": "PERCENT", "value": "20"},
                {
                    "type": "ECOM",
                    "valueType": "MONEY",
                    "value": "5",
                    "localValues": [{"currency": "EUR", "amount": 1}],
                },
            ],
        )["id"]
        draft = new_promotion(http, activate=False, external_id="FUZZ-DRAFT")["id"]
        aid = http.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
        redeemed = http.post(f"/api/v2/contacts/{cid}/promotions/{pid}/assign").json()["id"]
        r = http.post(f"/api/v2/promotions/codes/{redeemed}/redeem", json={"redemptionChannel": "POS"})
        assert r.status_code == 200, r.text
        r = http.post(f"/api/v2/promotions/multichannels/{pid}/bulk-assignments", json={"contactIds": [cid]})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        uid = f"fuzz-{uuid.uuid4().hex[:8]}"
        r = http.post(
            "/api/v2/receipts",
            json={
                "contact": {"matchKey": cid, "matchKeyType": "contactId"},
                "uniqueReceiptId": uid,
                "createdDate": "2026-03-10T10:00:00+01:00",
                "storeExternalId": "FUZZ-STORE",
                "currency": "SEK",
                "totalGrossPrice": 100,
                "paymentMethods": [{"type": "card", "value": 100}],
                "items": [{"sku": "A", "quantity": 1, "grossPaidPrice": 100}],
                "usedPromotions": [{"couponId": redeemed}],
            },
        )
        assert r.status_code == 200, r.text
    yield World(tenant["apiKey"], cid, pid, draft, aid, redeemed, job, "FUZZ-STORE", uid)


def _real(world: World, name: str) -> st.SearchStrategy[str]:
    return {
        "contact_id": st.just(world.contact_id),
        "contactId": st.just(world.contact_id),
        "promotion_id": st.sampled_from(world.promotion_refs),
        "promotionId": st.sampled_from(world.promotion_refs),
        "couponId": st.sampled_from([world.assignment_id, world.redeemed_id]),
        "assignment_id": st.sampled_from([world.assignment_id, world.redeemed_id]),
        "job_id": st.just(world.job_id),
        "external_id": st.just(world.store),
        "externalId": st.sampled_from(["FUZZ", "FUZZ-DRAFT"]),
        "uniqueReceiptId": st.just(world.receipt_id),
        "originalUniqueReceiptId": st.just(world.receipt_id),
        "storeExternalId": st.just(world.store),
    }.get(name, st.nothing())


NOW = datetime.now(UTC)
_SALE = (NOW - timedelta(hours=1)).isoformat(timespec="seconds")
_DAYS = st.sampled_from([None, "2026-01-01", (NOW + timedelta(days=30)).date().isoformat(), "2099-12-31"])


def _plausible(body: dict[str, Any], data: st.DataObject) -> None:
    """Dates inside the server's window and receipts that add up, so that generated bodies get past the first
    check and into the code behind it."""
    validity = body.get("validity") if isinstance(body.get("validity"), dict) else body
    if "startDate" in validity:
        validity["startDate"] = data.draw(_DAYS) or "2026-01-01"
        if "endDate" in validity:
            validity["endDate"] = data.draw(_DAYS)
    if "redeemedOn" in body:
        body["redeemedOn"] = data.draw(st.sampled_from([None, _SALE]))
    if "redemptionChannel" in body:
        body["redemptionChannel"] = data.draw(st.sampled_from(["POS", "ECOM", "OTHER", "pos", None]))
    if isinstance(body.get("items"), list) and isinstance(body.get("paymentMethods"), list):
        body["createdDate"] = _SALE
        body["currency"] = "SEK"
        body["uniqueReceiptId"] = data.draw(st.sampled_from([body.get("uniqueReceiptId"), uuid.uuid4().hex]))
        if body.get("originalUniqueReceiptId") == body["uniqueReceiptId"]:
            del body["originalUniqueReceiptId"]
        total = Decimal(0)
        for item in body["items"]:
            if isinstance(item, dict):
                try:
                    price = abs(Decimal(str(item.get("grossPaidPrice"))).quantize(Decimal("0.01"))) % 10_000
                except (InvalidOperation, ValueError):
                    price = Decimal(1)
                item["grossPaidPrice"] = float(price)
                for discount in item.get("discounts") or ():
                    if isinstance(discount, dict):
                        discount["value"] = -float(price / 2)
                total += -price if str(item.get("type", "")).upper() == "RETURN" else price
        body["totalGrossPrice"] = float(total)
        for i, payment in enumerate(body["paymentMethods"]):
            if isinstance(payment, dict):
                payment["value"] = float(total) if i == 0 else 0


def _with_real_ids(world: World, case: Any, data: st.DataObject) -> Any:
    """The case, with each id it carries (path, query, body) drawn from the seeded objects, and plausible dates
    and totals."""
    for params in (case.path_parameters, case.query):
        for name in list(params or {}):
            real = _real(world, name)
            if not real.is_empty:
                params[name] = data.draw(real)
    body = case.body
    if isinstance(body, dict):
        for name in list(body):
            real = _real(world, name)
            if not real.is_empty:
                body[name] = data.draw(real)
        if isinstance(body.get("contact"), dict):
            body["contact"].update(matchKey=world.contact_id, matchKeyType="contactId")
        for entry in body.get("usedPromotions") or ():
            if isinstance(entry, dict):
                entry["couponId"] = data.draw(_real(world, "couponId"))
        if isinstance(body.get("contactIds"), list):
            body["contactIds"] = [world.contact_id, *body["contactIds"][:2]]
        _plausible(body, data)
    return case


# Values schema-driven generation rarely or never produces (hypothesis leaves out surrogates, for one): text a
# database or a renderer may choke on, and numbers at the edges of what JSON and the columns carry.
NASTY_TEXT = [
    "\ud800", "a\udfffb", "\x00", "a\x00b", "x" * 5000, "\U0001f600" * 300, "\u202e\ufeff", "%00", "%FF", "\\",
    "'\"", " ", "", "0", "-1", "1e999", "NaN", "null", "true", "2026-02-30", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "{00000000-0000-0000-0000-000000000000}", "9" * 400,
]  # fmt: skip
NASTY_NUMBERS = [0, -1, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e-308, 0.1, 123456789.123456789]


def _nasty(value: Any, data: st.DataObject) -> Any:
    """``value`` (a generated body) with some of its leaves replaced by nasty values."""
    if isinstance(value, dict):
        return {k: _nasty(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_nasty(v, data) for v in value]
    if isinstance(value, str) and data.draw(st.integers(0, 2)) == 0:
        return data.draw(st.sampled_from(NASTY_TEXT))
    if isinstance(value, int | float) and not isinstance(value, bool) and data.draw(st.integers(0, 2)) == 0:
        return data.draw(st.sampled_from(NASTY_NUMBERS))
    return value


def _send_nasty(
    session: requests.Session, base_url: str, case: Any, headers: dict[str, str], data: Any
) -> Any:
    # Sent here, not by schemathesis: it re-validates a changed body itself, and its validator cannot take a lone
    # surrogate. json.dumps writes one as the escape \\ud800, as a client would.
    case.freeze_metadata()
    body = json.dumps(_nasty(case.body, data)).encode()
    return session.request(
        case.method,
        base_url + case.formatted_path,
        params=case.query,
        headers={**(case.headers or {}), **headers, "Content-Type": "application/json"},
        data=body,
        timeout=60,
    )


def _error_codes(method: str, path: str, status: int) -> list[str]:
    answer = DOC["paths"][path][method.lower()]["responses"].get(str(status), {})
    return list(answer.get("x-error-codes", []))


def _log(live: Any) -> str:
    """The end of the live server's output (its traceback, after a 500)."""
    return "server log:\n" + "".join(live.server.output[-60:])


def _sent(response: Any) -> str:
    request = response.request
    body = request.body or b""
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return f"sent: {request.method} {request.url}\n{body[:3000]}"


def _check(live: Any, case: Any, response: Any, headers: dict[str, str]) -> None:
    """The answer is documented: status, content type, schema, headers; an error carries a documented code. A
    method the path does not serve is a 405 naming the methods it does."""
    assert response.status_code < 500, (
        f"{response.status_code} {response.text}\n{_sent(response)}\n{_log(live)}"
    )
    if case.method.lower() not in DOC["paths"][case.path]:
        body = response.json()
        if response.status_code == 405:
            assert body["errorCode"] == "MethodNotAllowed", body
            allowed = {m.strip() for m in ",".join(response.headers["allow"]).split(",")}
            assert {m.upper() for m in DOC["paths"][case.path]} <= allowed, response.headers
        else:  # another path's template took it (DELETE …/multichannels/validity is a DELETE of a promotion)
            assert response.status_code < 500 and (response.status_code < 400 or "errorCode" in body), body
        return
    case.validate_response(response, checks=CHECKS, headers=headers)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"statusCode", "errorCode", "message"}, body
        assert body["statusCode"] == response.status_code, body
        assert body["errorCode"] in _error_codes(case.method, case.path, response.status_code), (
            f"{case.method} {case.path} answered {response.status_code} {body['errorCode']}, which the document "
            f"does not list for that status: {body['message']}\n{case.as_curl_command(headers=headers)}"
        )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_5xx(
    live: Any, world: World, method: str, path: str
) -> None:
    operation = SCHEMA[path][method]
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    modes = st.sampled_from(["positive", "negative", "seeded", "seeded", "nasty"])
    headers = {"apikey": world.key}
    seen: dict[int, int] = {}

    with requests.Session() as session:

        @settings(
            max_examples=max(EXAMPLES // 3, 5) if path in SLOW else EXAMPLES,
            deadline=None,
            database=None,
            derandomize=os.environ.get("PROMOFLOW_FUZZ_SEED") is None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(data=st.data())
        def fuzz(data: st.DataObject) -> None:
            mode = data.draw(modes)
            case = data.draw(negative if mode == "negative" else positive)
            if mode in ("seeded", "nasty"):
                bodies = EXAMPLE_BODIES[(method, path)]
                if bodies and data.draw(st.booleans()):
                    case.body = copy.deepcopy(data.draw(st.sampled_from(bodies)))
                case = _with_real_ids(world, case, data)
                if case.headers and "Idempotency-Key" in case.headers and data.draw(st.booleans()):
                    case.headers["Idempotency-Key"] = uuid.uuid4().hex
            if mode == "nasty" and isinstance(case.body, dict | list):
                response = _send_nasty(session, live.base_url, case, headers, data)
            else:
                response = case.call(base_url=live.base_url, session=session, headers=headers, timeout=60)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            _check(live, case, response, headers)

        fuzz()
    assert seen, "no request was sent"


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_boundary_values_of_every_operation(live: Any, world: World, method: str, path: str) -> None:
    """schemathesis's coverage cases: each parameter and field at and beyond its documented bounds, each missing
    required value, each enum member, wrong types — a fixed set, the same every run."""
    operation = SCHEMA[path][method]
    cases = list(
        SCHEMA.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=SCHEMA.config.generation_for(operation=operation),
        )
    )
    assert cases
    headers = {"apikey": world.key}
    with requests.Session() as session:
        for case in cases:
            response = case.call(base_url=live.base_url, session=session, headers=headers, timeout=60)
            _check(live, case, response, headers)
