"""Small, pure readers of HTTP response headers the SDK acts on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-correlation-id")
"""Where servers put the id that ties a response to their logs; the first present one wins."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or None when absent or unreadable.

    Both RFC 9110 forms are accepted: delta-seconds (``"120"``; a decimal such as ``"1.5"`` is tolerated)
    and an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``), measured against ``now`` (UTC by default). A date
    in the past, or a negative number, means "no need to wait" and gives 0.0. No cap here: the policy caps.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() also accepts "nan" and "inf": neither is a usable wait.
        if not math.isfinite(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; parsedate gives a naive value for "-0000".
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def request_id(headers: Mapping[str, str]) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def is_replayed(headers: Mapping[str, str]) -> bool:
    """True when the server answered from its idempotency store (header ``Idempotent-Replayed: true``)."""
    return headers.get("idempotent-replayed", "").strip().lower() == "true"
