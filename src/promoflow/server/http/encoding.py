"""The request as text, checked before any route sees it (by the front layer, `middleware.Front`).

- A path or query that is not UTF-8, or a NUL character in the path, query or headers → 400 `InvalidEncoding`.
  Without this the two databases disagree: the ASGI server decodes a bad ``%FF`` to U+FFFD (which would then be
  stored as such), and a ``%00`` reaches the database, where SQLite stores it and PostgreSQL refuses it.
- A JSON body that is not UTF-8, or nested deeper than ``MAX_JSON_DEPTH`` → 400 `InvalidJson`. Python's JSON
  reader guesses UTF-16 and UTF-32 where RFC 8259 says JSON is UTF-8: UTF-8 JSON never holds a NUL byte (a NUL in
  a string is written ``\\u0000``), the others always do; and it lets UTF-8-encoded surrogates through (as lone
  surrogates, which no database can store). And it recurses once per level, so a deep body ends in a RecursionError
  somewhere near the interpreter's limit (or, just under it, deeper in the request's code).

The three redeem paths read their bodies themselves (the fast lane among them) and are left to that code.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from ..exceptions import PromoflowError
from .exception_handlers import error_body

MAX_JSON_DEPTH = 32
"""How deeply a JSON body may nest arrays and objects (Engage's bodies need 5)."""

# Single bytes as ints: ``0 in data`` is a memchr, ``b"\x00" in data`` a much slower substring search.
_NUL, _PERCENT = 0, ord("%")


def encoding_problem(scope: Scope) -> str | None:
    """What is wrong with the request's path, query or headers as text, or None."""
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path if raw_path is not None else scope["path"].encode("utf-8", "surrogatepass")
    problem = _text_problem(path.split(b"?", 1)[0], "the path")
    if problem is not None:
        return problem
    query: bytes = scope.get("query_string", b"")
    if query and not _plain(query):
        for part in query.split(b"&"):
            for piece in part.split(b"=", 1):
                problem = _text_problem(piece.replace(b"+", b" "), "a query parameter")
                if problem is not None:
                    return problem
    for name, value in scope.get("headers", ()):
        if _NUL in value:
            return f"the header {name.decode('latin-1')!r} holds a NUL character"
    return None


def _plain(raw: bytes) -> bool:
    # The common case: ASCII without escapes or NUL is UTF-8 text as it stands.
    return raw.isascii() and _PERCENT not in raw and _NUL not in raw


def _text_problem(raw: bytes, what: str) -> str | None:
    if _plain(raw):
        return None
    data = unquote_to_bytes(raw)
    if _NUL in data:
        return f"{what} holds a NUL character"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{what} is not valid UTF-8 once its %-escapes are decoded"
    return None


def json_problem(body: bytes) -> str | None:
    """What makes a JSON body unreadable as UTF-8 JSON of a sane depth, or None (syntax is the parser's)."""
    if _NUL in body:
        return "the body is not UTF-8 (it holds NUL bytes, as UTF-16 and UTF-32 do)"
    try:
        body.decode("utf-8")  # Python's reader would let UTF-8-encoded surrogates through
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (at byte {exc.start})"
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(body):
        return f"the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
    return None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PARENS = bytes.maketrans(b"[{]}", b"(())")


def _too_deep(body: bytes) -> bool:
    # Brackets inside strings do not nest: drop the strings (split at the quotes when no quote is escaped), keep
    # the brackets as parentheses, then peel the innermost pairs away level by level (all in C).
    structure = _STRING.sub(b"", body) if b'\\"' in body else b"".join(body.split(b'"')[::2])
    parens = structure.translate(_PARENS, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        peeled = parens.replace(b"()", b"")
        if peeled == parens:  # empty, or unbalanced (then the parser refuses it)
            return False
        parens = peeled
    return bool(parens)


async def refuse(exc: PromoflowError, scope: Scope, receive: Receive, send: Send) -> None:
    status, body, headers = error_body(exc)
    await JSONResponse(body, status, headers=headers)(scope, receive, send)


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body (the guard in front limits its size), and a disconnect that came instead of its end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks), None


def replay(body: bytes, rest: Message | None, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if rest is not None:
        pending.append(rest)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
