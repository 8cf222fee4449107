"""Every 2xx JSON answer the test suite receives from promoflow is checked against the OpenAPI document, in a
strict form: an optional field (a property not in ``required``) may be missing, but not ``null`` — what clients
generated from Engage's swagger accept (issue 11 §4). Installed for every Starlette TestClient and every client of
a live server (tests/conftest.py); an answer that does not match fails the test that received it.

Operations are found by their path template (literal segments before parameters: ``/contacts/id`` before
``/contacts/{id}``); a status without a JSON schema in the document is not checked, nor is the replay of an
Idempotency-Key (the stored answer was checked when it was first sent). No operation is exempt: every feature's
answers leave absent optional fields out.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from functools import cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator


def strict(schema: Any) -> Any:
    """The schema with ``null`` taken out of every optional property."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        required = set(out.get("required", ()))
        for name, prop in props.items():
            if name not in required:
                props[name] = _not_null(prop)
    return out


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    branches = prop.get("anyOf")
    if not isinstance(branches, list):
        return prop
    kept = [b for b in branches if b != {"type": "null"}]
    out = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(kept) == 1:
        out.update(kept[0])
    else:
        out["anyOf"] = kept
    return out


_building = threading.Lock()


def _document() -> dict[str, Any]:
    # One build, under a lock: tests that answer from several threads at once would otherwise build the document
    # concurrently, and pydantic's schema generation is not safe to run from two threads at a time.
    with _building:
        return _built()


@cache
def _built() -> dict[str, Any]:
    from promoflow.server.config import Settings
    from promoflow.server.http.app import create_app

    doc = create_app(Settings(database_url="sqlite:///unused.sqlite3")).openapi()
    return strict(doc)  # type: ignore[no-any-return]


@cache
def _operations() -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in _document()["paths"]:
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        out.append((pattern, template, template.count("{")))
    return sorted(out, key=lambda o: o[2])


def _schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    for pattern, template, _ in _operations():
        if pattern.match(path):
            doc = _document()
            operation = doc["paths"][template].get(method.lower())
            if operation is None:
                continue
            response = operation.get("responses", {}).get(str(status), {})
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            return None if schema is None else {**copy.deepcopy(schema), "components": doc["components"]}
    return None


def check(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """Raise AssertionError when a 2xx JSON answer of a documented operation does not match its schema."""
    if not 200 <= status < 300 or not path.startswith("/api/") or "json" not in content_type or not body:
        return
    schema = _schema(method, path, status)
    if schema is None:
        return
    errors = sorted(Draft202012Validator(schema).iter_errors(json.loads(body)), key=lambda e: list(e.path))
    if errors:
        where = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5])
        raise AssertionError(f"{method} {path} → {status} does not match its OpenAPI schema: {where}")


def check_response(response: httpx.Response) -> None:
    """An httpx response hook (read the body first)."""
    response.read()
    request = response.request
    if response.headers.get("idempotent-replayed") == "true":
        return
    check(request.method, request.url.path, response.status_code, response.headers.get("content-type", ""),
          response.content)  # fmt: skip
