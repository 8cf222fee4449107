"""The OpenAPI document is true: valid OpenAPI 3.1 (checked by openapi-spec-validator), every reference resolves,
every parameter and text is bounded, ids are UUIDs, and the answers the server gives are the ones it documents
(the fuzz run in test_fuzz.py checks that last point against the live server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from promoflow.wire.engage import NO_NUL, WEB_URL

from ._support import assert_error

NUMBER_TEXT = "^[+-]?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?$"


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, path, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


def _walk(node: Any, trail: str = "#") -> Any:
    if isinstance(node, dict):
        yield trail, node
        for key, value in node.items():
            yield from _walk(value, f"{trail}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{trail}/{i}")


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    errors = [str(e)[:300] for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    """The validator does not follow references; a dangling one (RedeemBody, once) breaks every generated client."""
    refs = [(trail, node["$ref"]) for trail, node in _walk(doc) if isinstance(node.get("$ref"), str)]
    assert refs
    for trail, ref in refs:
        try:
            _resolve(doc, ref)
        except KeyError:
            pytest.fail(f"{trail}: {ref} does not exist")


def test_every_integer_parameter_is_bounded(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        for p in op.get("parameters", ()):
            schemas = [p["schema"], *p["schema"].get("anyOf", ())]
            for schema in schemas:
                if schema.get("type") == "integer":
                    assert "maximum" in schema and "minimum" in schema, (method, path, p["name"])


def test_path_ids_are_uuids_and_other_path_texts_are_bounded(doc: dict[str, Any]) -> None:
    seen = set()
    for method, path, op in _operations(doc):
        for p in op.get("parameters", ()):
            if p["in"] != "path":
                continue
            seen.add(p["name"])
            if p["name"].endswith("_id") and p["name"] != "external_id":
                assert p["schema"]["format"] == "uuid", (method, path, p)
            else:
                assert p["schema"]["maxLength"] == 255, (method, path, p)
    assert {"contact_id", "promotion_id", "assignment_id", "job_id", "import_id", "external_id"} <= seen


def _string_schemas(doc: dict[str, Any], schema: dict[str, Any], trail: str, seen: set[str]) -> Any:
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen.add(schema["$ref"])
        yield from _string_schemas(doc, _resolve(doc, schema["$ref"]), schema["$ref"], seen)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, ())):
            yield from _string_schemas(doc, sub, f"{trail}/{key}/{i}", seen)
    if schema.get("type") == "string":
        yield trail, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _string_schemas(doc, sub, f"{trail}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from _string_schemas(doc, schema["items"], f"{trail}[]", seen)


def test_every_text_of_a_request_body_has_a_maximum_and_no_nul(doc: dict[str, Any]) -> None:
    """Promotions, receipts, stores, assignments: every text field says how long it may be (documented in
    docs/api.md too) and that a NUL character is refused. Contact bodies are free-form attributes (their rules are
    the contact feature's)."""
    checked = 0
    for method, path, op in _operations(doc):
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body is None or (
            path.startswith(("/api/v2/contacts", "/api/v3/contacts")) and not path.endswith("/redeem")
        ):
            continue
        for trail, schema in _string_schemas(doc, body, f"{method} {path}", set()):
            if "enum" in schema or schema.get("format") in ("date", "date-time"):
                continue
            checked += 1
            assert "maxLength" in schema, trail
            # WEB_URL (a promotion's link and image) refuses every control character, NUL included.
            if schema.get("pattern") not in (NO_NUL, "^(RETAIL|ECOM)$", NUMBER_TEXT, WEB_URL):
                assert schema.get("maxLength", 0) <= 3, (trail, schema)  # currencies: letters only
    assert checked > 50


def test_no_operation_documents_the_frameworks_422(doc: dict[str, Any]) -> None:
    """promoflow answers a schema failure with 400 `InvalidPayload`; 422 is only `IdempotencyKeyMismatch`."""
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for method, path, op in _operations(doc):
        answer = op["responses"].get("422")
        if answer is not None:
            assert answer["x-error-codes"] == ["IdempotencyKeyMismatch"], (method, path)


def _codes(doc: dict[str, Any], method: str, path: str, status: int) -> list[str]:
    return list(doc["paths"][path][method]["responses"][str(status)].get("x-error-codes", []))


def test_the_answers_once_missing_are_documented(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/v2/contacts"]["post"]["responses"]
    assert {"200", "201"} <= set(responses)
    assert {"200", "201"} <= set(doc["paths"]["/api/v2/stores/{external_id}"]["put"]["responses"])
    assert "InvalidPayload" in _codes(doc, "get", "/api/v2/promotions/multichannels/validity", 400)
    assert "InvalidPayload" in _codes(doc, "delete", "/api/v2/promotions/multichannels", 400)
    for path in (
        "/api/v2/promotions/codes/{promotion_id}/redeem",
        "/api/v3/promotion-assignments/{assignment_id}/redeem",
        "/api/v2/contacts/{contact_id}/promotions/{promotion_id}/redeem",
    ):
        assert {"InvalidJson", "InvalidPayload", "NotAValidRedemptionChannel"} <= set(
            _codes(doc, "post", path, 400)
        )
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "redemptionChannel" in schema["anyOf"][0]["properties"]


def test_every_api_operation_is_authenticated_and_writes_take_an_idempotency_key(doc: dict[str, Any]) -> None:
    assert set(doc["components"]["securitySchemes"]) == {"apikey", "bearer"}
    for method, path, op in _operations(doc):
        if not path.startswith("/api/"):
            assert op["security"] == []
            continue
        assert op["security"] == [{"apikey": []}, {"bearer": []}]
        assert {"MissingApiKey", "InvalidApiKey"} <= set(_codes(doc, method, path, 401))
        assert "ServiceUnavailable" in _codes(doc, method, path, 503)
        assert "InvalidEncoding" in _codes(doc, method, path, 400)
        if method in ("post", "put", "patch"):
            assert "Idempotency-Key" in [p["name"] for p in op["parameters"]], (method, path)
            assert "IdempotencyKeyMismatch" in _codes(doc, method, path, 422)
        if "requestBody" in op:
            assert {"InvalidJson", "InvalidPayload"} <= set(_codes(doc, method, path, 400))
            assert _codes(doc, method, path, 415) == ["UnsupportedMediaType"]
            assert _codes(doc, method, path, 413) == ["PayloadTooLarge"]


def test_the_served_document_is_the_completed_one(api: Any) -> None:
    served = api.client.get("/openapi.json").json()
    assert served == api.client.app.openapi()
    assert "securitySchemes" in served["components"]


def test_a_405_names_the_allowed_methods(api: Any) -> None:
    r = api.client.delete("/api/v2/contacts/count", headers=api.headers)
    assert_error(r, 405, "MethodNotAllowed")
    assert r.headers["allow"] == "GET, POST"  # POST routes there: the update of contact "count" (a 400)
    r = api.client.post("/api/v2/stores", headers=api.headers)
    assert_error(r, 405, "MethodNotAllowed")
    assert r.headers["allow"] == "GET"
    r = api.client.patch(f"/api/v2/promotions/multichannels/{'0' * 32}", headers=api.headers)
    assert_error(r, 405, "MethodNotAllowed")
    assert r.headers["allow"] == "DELETE, GET, PUT"


def test_the_docs_name_the_limits(doc: dict[str, Any]) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for needle in ("2000-01-01", "2100-12-31", "32 levels", "`InvalidEncoding`"):
        assert needle in text, needle
