"""GUIDs as Engage writes them: lowercase canonical on output, any case accepted on input."""

from __future__ import annotations

import uuid


def parse_guid(value: str) -> uuid.UUID | None:
    """The UUID in ``value`` (with or without braces/dashes, any case), or None if it is not one."""
    text = value.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if len(text) not in (32, 36):
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
