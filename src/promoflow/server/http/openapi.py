"""OpenAPI helpers: the error responses of each endpoint, and the marker for promoflow's extensions."""

from __future__ import annotations

from typing import Any

from ...wire.engage import ErrorBody

EXTENSION = {"x-promoflow-extension": True}
_COMMON = {401: ["MissingApiKey", "InvalidApiKey"], 403: ["IpNotAllowed"], 429: ["TooManyRequests"]}


def errors(**by_status: list[str]) -> dict[int | str, dict[str, Any]]:
    """``errors(e404=["ContactNotFound"])`` → the responses block documenting each status and its error codes."""
    out: dict[int | str, dict[str, Any]] = {}
    merged: dict[int, list[str]] = {k: list(v) for k, v in _COMMON.items()}
    for name, codes in by_status.items():
        merged.setdefault(int(name.lstrip("e")), []).extend(codes)
    for status, codes in sorted(merged.items()):
        out[status] = {"model": ErrorBody, "description": "Error codes: " + ", ".join(codes)}
    return out


def body_schema(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}
