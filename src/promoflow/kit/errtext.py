"""An error as one line of a log or an answer."""

from __future__ import annotations


def error_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an error's message — the driver's own error where SQLAlchemy wraps one
    (``orig``) — cut at ``limit`` characters; the error's class name when it has no message."""
    orig = getattr(exc, "orig", None) or exc
    for line in str(orig).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(orig).__name__
