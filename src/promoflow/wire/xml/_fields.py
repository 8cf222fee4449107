"""Field types shared by the XML record models."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from promoflow.kit.guid import parse_guid

NAMESPACE_PREFIX = "urn:promoflow:"
"""promoflow's own formats are written without a namespace; ``urn:promoflow:<format>`` is accepted on read."""


_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _guid(value: str) -> str:
    # Fast path for the canonical spelling: a million-record import spends real time in uuid.UUID otherwise.
    lowered = value.lower()
    if _CANONICAL_GUID.fullmatch(lowered):
        return lowered
    parsed = parse_guid(value)
    if parsed is None:
        raise ValueError("not a GUID")
    return str(parsed)


def _blank_to_none(value: Any) -> Any:
    # An empty optional element (<receiptNumber/>) means "not given", as XML writers often emit them.
    if isinstance(value, str) and not value.strip():
        return None
    return value


Guid = Annotated[str, AfterValidator(_guid)]
"""A GUID in any accepted spelling, held in lowercase canonical form."""

Blank = BeforeValidator(_blank_to_none)
