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


def os_error(exc: BaseException | None) -> OSError | None:
    """The OSError with an error number in or beneath ``exc`` — itself, one it wraps as its first argument
    (pyftpdlib raises ``OSError(OSError(98, …))`` and ``_FileReadWriteError(err)``, whose own errno is None), its
    cause or its context — or None."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = inner or seen.__cause__ or seen.__context__
    return None
