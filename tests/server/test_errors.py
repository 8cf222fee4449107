"""One error class per error code, one table of codes (``wire.errors``) shared by the server, the file importer and
the SDK, and the OpenAPI document generated from the classes."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import promoflow.server
from promoflow.server.exceptions import PromoflowError
from promoflow.wire.errors import HTTP_STATUS, ErrorCode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _all_error_classes() -> list[type[PromoflowError]]:
    for mod in pkgutil.walk_packages(promoflow.server.__path__, "promoflow.server."):
        if mod.name.endswith(("errors", "exceptions")):
            importlib.import_module(mod.name)
    seen: list[type[PromoflowError]] = []
    todo = [PromoflowError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("promoflow."):  # not the classes the tests below define
            seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def test_every_code_has_exactly_one_class_named_after_it():
    by_code: dict[ErrorCode, list[str]] = {}
    for cls in _all_error_classes():
        if "code" in vars(cls) or cls is PromoflowError:
            by_code.setdefault(cls.code, []).append(cls.__name__)
    assert set(by_code) == set(ErrorCode), "codes without a class: " + str(set(ErrorCode) - set(by_code))
    for code, names in by_code.items():
        assert len(names) == 1, f"{code} has several classes: {names}"
        assert names[0].endswith("Error"), names[0]


def test_a_class_status_must_be_its_codes_status():
    from promoflow.server.exceptions import NotFoundError

    with pytest.raises(TypeError, match="is a 400, not a 404"):

        class _Wrong(NotFoundError):
            code = ErrorCode.INVALID_PAYLOAD


def test_feature_errors_are_declared_in_the_features_errors_module():
    for cls in _all_error_classes():
        if cls.__module__ != "promoflow.server.exceptions":
            assert cls.__module__.endswith(".errors"), f"{cls.__name__} is declared in {cls.__module__}"


def test_the_api_docs_list_every_code_with_its_status():
    text = DOCS.read_text()
    table = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| `(\w+)` \| (\d{3}) \|", text, re.M)}
    assert table == {code.value: status for code, status in HTTP_STATUS.items()}


def test_every_documented_error_code_of_the_openapi_exists(tmp_path):
    from promoflow.server.config import Settings
    from promoflow.server.http.app import create_app

    doc = create_app(Settings(data_dir=tmp_path)).openapi()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op.get("responses", {}).items():
                for code in answer.get("x-error-codes", []):
                    assert HTTP_STATUS[ErrorCode(code)] == int(status), (
                        f"{method} {path}: {code} under {status}"
                    )
