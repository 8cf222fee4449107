"""OpenAPI helpers: the error responses of each endpoint, and the marker for promoflow's extensions."""

from __future__ import annotations

from typing import Any

from ...wire.engage import ErrorBody
from ..exceptions import PromoflowError, TooManyRequestsError
from .errors import InvalidApiKeyError, IpNotAllowedError, MissingApiKeyError

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
