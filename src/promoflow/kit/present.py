"""Answers without ``null``: an absent optional field is left out of a JSON answer, never sent as ``null``.

Clients generated from Engage's swagger type optional fields as string / array / object and reject ``null``; a
client that accepts ``null`` accepts a missing key too (issue 11 §4). A field whose ``null`` carries meaning is
required in its schema and is not passed through these helpers.
"""

from __future__ import annotations

from typing import Any


def present(out: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """``out`` with those of the ``optional`` fields that have a value (updated in place and returned)."""
    out.update((k, v) for k, v in optional.items() if v is not None)
    return out


def without_none(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` without the keys whose value is ``None``."""
    return {k: v for k, v in fields.items() if v is not None}
