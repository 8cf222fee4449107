"""The raw SQLite statements' conversions (`statements.SqliteText`): JSON written and read as SQLAlchemy's JSON type
writes and reads it, through pydantic_core (`json_text`, `json_of_text`), including what pydantic_core refuses."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import JSON

from promoflow.server.promotion.statements import json_of_text, json_text

VALUES = [
    {"firstName": "Åsa", "points": 12, "ratio": 0.5, "member": True, "gone": None},
    {"big": 123456789012345678901234567890, "neg": -0.0, "list": [1, "two", [3.25]]},
    [],
    {},
    "text",
    7,
]


@pytest.mark.parametrize("value", VALUES)
def test_json_text_reads_back_as_json_loads_reads_json_dumps(value: object) -> None:
    text = json_text(value)
    assert json.loads(text) == value
    assert json_of_text(text) == value
    assert json_of_text(json.dumps(value)) == value  # what the routed path (SQLAlchemy) stored


def test_json_null_and_what_pydantic_core_refuses() -> None:
    assert json_text(JSON.NULL) == "null"
    lone = {"a": "\ud800"}  # a lone surrogate: pydantic_core refuses it, json.dumps escapes it
    assert json_text(lone) == json.dumps(lone)
    assert json_of_text(json.dumps(lone)) == lone
    nan = {"a": float("nan")}  # written as json.dumps writes it
    assert json_text(nan) == '{"a":NaN}'
    assert json.dumps(nan) == '{"a": NaN}'


def test_the_raw_statements_convert_json_through_them() -> None:
    from promoflow.server.contact.quick import _LITE_AUDIT, _LITE_ROW

    assert _LITE_AUDIT.binds["before"] is json_text and _LITE_AUDIT.binds["after"] is json_text
    assert json_of_text in _LITE_ROW.results


def test_a_number_sqlite_hands_back_as_such_passes_through() -> None:
    conn = sqlite3.connect(":memory:")
    (raw,) = conn.execute("SELECT json_extract('{\"n\": 5}', '$.n')").fetchone()
    assert raw == 5 and json_of_text(raw) == 5
