"""The OpenAPI document: the error responses each endpoint declares (``errors``), the marker for promoflow's
extensions, and ``install``, which completes FastAPI's document with what the edge does for every operation.

Routes declare what their own code raises. The edge's answers depend only on an operation's shape, so they are
added here, once: authentication and rate limits on every `/api/` operation; `InvalidEncoding` and 503 on every
one; `InvalidPayload` where there are parameters or a body; `InvalidJson`, 413 and 415 where there is a body; the
`Idempotency-Key` header and its three errors on every POST/PUT/PATCH. FastAPI's own 422 ("HTTPValidationError"),
which promoflow never answers (a schema failure is a 400), is removed, and path ids are declared as UUIDs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ...wire.engage import ErrorBody
from ..exceptions import (
    InvalidJsonError,
    InvalidPayloadError,
    PayloadTooLargeError,
    PromoflowError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)
from .errors import (
    IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
    InvalidApiKeyError,
    InvalidEncodingError,
    InvalidIdempotencyKeyError,
    IpNotAllowedError,
    MissingApiKeyError,
)

EXTENSION = {"x-promoflow-extension": True}
# What every authenticated operation can answer.
_COMMON: tuple[type[PromoflowError], ...] = (
    MissingApiKeyError, InvalidApiKeyError, IpNotAllowedError, TooManyRequestsError,
)  # fmt: skip


def errors(*raised: type[PromoflowError]) -> dict[int | str, dict[str, Any]]:
    """The responses block of an operation that can raise these errors (and those of authentication): one
    entry per status, listing its error codes. ``x-error-codes`` carries the codes machine-readably."""
    by_status: dict[int, list[str]] = {}
    for cls in (*_COMMON, *raised):
        codes = by_status.setdefault(cls.status, [])
        if cls.code.value not in codes:
            codes.append(cls.code.value)
    return {
        status: {
            "model": ErrorBody,
            "description": "Error codes: " + ", ".join(codes),
            "x-error-codes": codes,
        }
        for status, codes in sorted(by_status.items())
    }


def body_schema(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


# ------------------------------------------------------------------------------------------- the document

_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_EVERY_API_OPERATION = (*_COMMON, InvalidEncodingError, ServiceUnavailableError)
_WITH_INPUT = (InvalidPayloadError,)
_WITH_BODY = (InvalidJsonError, PayloadTooLargeError, UnsupportedMediaTypeError)
_WRITES = ("post", "put", "patch")
_IDEMPOTENCY = (InvalidIdempotencyKeyError, IdempotencyKeyInUseError, IdempotencyKeyMismatchError)
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Extension: the same key and request again answer the stored answer (see docs/api.md).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
GUID_PARAMETERS = frozenset({"contact_id", "promotion_id", "assignment_id", "job_id", "import_id"})
"""Path parameters that are GUIDs (any case and braces are accepted too; the document names the canonical form)."""
_TEXT_PARAMETERS = {"external_id": {"type": "string", "minLength": 1, "maxLength": 255}}
SECURITY_SCHEMES = {
    "apikey": {"type": "apiKey", "in": "header", "name": "apikey", "description": "The tenant's API key."},
    "bearer": {"type": "http", "scheme": "bearer", "description": "The tenant's API key as a Bearer token."},
}


def install(app: FastAPI) -> None:
    """Serve the completed document at `/openapi.json` (and to ``app.openapi()``)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    completed: list[int] = []

    def document() -> dict[str, Any]:
        doc = generate()  # cached by FastAPI until the routes change
        if id(doc) not in completed:
            complete(doc)
            completed[:] = [id(doc)]
        return doc

    app.openapi = document  # type: ignore[method-assign]


def complete(doc: dict[str, Any]) -> None:
    """Add to FastAPI's document what the edge does for every operation (see the module's docstring)."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            _drop_framework_422(op)
            for parameter in op.get("parameters", ()):
                if parameter.get("in") == "path":
                    if parameter["name"] in GUID_PARAMETERS:
                        parameter["schema"] = {"type": "string", "format": "uuid", "title": parameter["name"]}
                    elif parameter["name"] in _TEXT_PARAMETERS:
                        parameter["schema"] = {
                            **_TEXT_PARAMETERS[parameter["name"]],
                            "title": parameter["name"],
                        }
            if not path.startswith("/api/"):
                op["security"] = []
                continue
            op["security"] = [{"apikey": []}, {"bearer": []}]
            raised: list[type[PromoflowError]] = list(_EVERY_API_OPERATION)
            if op.get("parameters") or "requestBody" in op:
                raised += _WITH_INPUT
            if "requestBody" in op:
                raised += _WITH_BODY
            if method in _WRITES:
                raised += _IDEMPOTENCY
                names = {p["name"].lower() for p in op.get("parameters", ())}
                if "idempotency-key" not in names:
                    op.setdefault("parameters", []).append(dict(IDEMPOTENCY_HEADER))
            _add_errors(op["responses"], raised)
            op["responses"] = dict(sorted(op["responses"].items()))


def _drop_framework_422(op: dict[str, Any]) -> None:
    answer = op.get("responses", {}).get("422")
    if answer is None:
        return
    if answer.get("x-error-codes"):
        answer["content"] = {"application/json": {"schema": _ERROR_SCHEMA}}
    else:
        del op["responses"]["422"]


def _add_errors(responses: dict[str, Any], raised: list[type[PromoflowError]]) -> None:
    for cls in raised:
        status = str(cls.status)
        answer = responses.setdefault(
            status, {"description": "", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
        codes = answer.setdefault("x-error-codes", [])
        if cls.code.value not in codes:
            codes.append(cls.code.value)
        answer["description"] = "Error codes: " + ", ".join(codes)
        if cls.status in (429, 503):
            answer["headers"] = _RETRY_AFTER
