"""Field types shared by the XML record models."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

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


Guid = Annotated[str, AfterValidator(_guid)]
"""A GUID in any accepted spelling, held in lowercase canonical form."""
