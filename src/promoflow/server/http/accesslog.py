"""The HTTP access log: one line per request on stderr — method, path, status, milliseconds, tenant.

It is written by the front layer (`http.front`), outermost, so it times and sees every answer, the guard's
413/415/503 and the fast lane's included. The tenant is the name behind the request's API key as the edge
verified it (its per-process key cache): looking it up again costs one SHA-256 of the key and a dict probe, and a
request whose key was not accepted shows `-`.
The query string is left out (look-ups carry e-mail addresses and phone numbers).

Text lines read like the other log lines::

    2026-03-10 12:00:00,123 INFO promoflow.access GET /api/v2/contacts/…/promotions 200 1.8ms tenant=acme

and with ``PROMOFLOW_ACCESS_LOG_FORMAT=json`` (or ``PROMOFLOW_LOG_FORMAT=json``) each line is an object, with the
keys every JSON log line of the process has (``kit/jsonlog``: ts, level, logger, event)::

    {"ts":"2026-03-10T12:00:00.123Z","level":"INFO","logger":"promoflow.access","event":"http.request",
     "method":"GET","path":"/api/v2/…","status":200,"ms":1.8,"tenant":"acme"}

It is on the hot path, so it does not go through `logging` (a record, a formatter and a locked handler cost
several microseconds a request): the line is built with one format and written to the stream directly. While
other requests are in flight, lines are gathered and written together (one write of at most ``BATCH_BYTES``, so
lines of several processes sharing a pipe never mix), at the latest ``HOLD_SECONDS`` later; the line of a request
that ends with none other in flight is written at once, gathered lines with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from typing import IO, Any

import pydantic_core
from starlette.types import Scope

from .edge import TENANT

BATCH_BYTES = 3_000  # below PIPE_BUF (4,096): one write() to a pipe is never split
HOLD_SECONDS = 0.05


class _Stamp:
    """The time prefix of a line, rebuilt at most once per second (formatting a time costs more than a line)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def text(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._text

    def iso(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._text


def _key_digest(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"apikey":
            raw = value.strip()
            return hashlib.sha256(raw).hexdigest() if raw else None
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return hashlib.sha256(token.strip()).hexdigest()
    return None


class AccessLog:
    """Writes the line of each answered request; the one front layer (`http.front.Front`) calls `write`."""

    def __init__(self, *, holder: Any, json: bool = False, stream: IO[str] | None = None) -> None:
        self.holder = holder  # has .state (AppState, with the key cache) once the app has started
        self.json = json
        self.stream = stream
        self.stamp = _Stamp()
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def _tenant(self, scope: Scope) -> str:
        ctx = scope.get(TENANT)  # the request was authorised
        if ctx is not None:
            return str(ctx.name)
        state = self.holder.state
        if state is None:
            return "-"
        digest = _key_digest(scope["headers"])
        if digest is None:
            return "-"
        cached = state.key_cache.get(digest)
        return "-" if cached is None else cached[0].name

    def write(self, scope: Scope, status: int, ms: float, idle: bool = True) -> None:
        """The line of an answered request; ``idle``: no other request is in flight."""
        raw = scope.get("raw_path")
        # The path as sent (percent-encoded, so no spaces or line breaks can forge a line).
        path = raw.decode("latin-1") if raw else scope["path"]
        tenant = self._tenant(scope)
        now = time.time()
        if self.json:
            body = {
                "ts": f"{self.stamp.iso(now)}.{int(now * 1000) % 1000:03d}Z",
                "level": "INFO",
                "logger": "promoflow.access",
                "event": "http.request",
                "method": scope["method"],
                "path": path,
                "status": status,
                "ms": round(ms, 1),
                "tenant": None if tenant == "-" else tenant,
            }
            line = pydantic_core.to_json(body).decode() + "\n"
        else:
            if not path.isprintable() or " " in path:
                path = repr(path)
            line = (
                f"{self.stamp.text(now)},{int(now * 1000) % 1000:03d} INFO promoflow.access "
                f"{scope['method']} {path} {status} {ms:.1f}ms tenant={tenant}\n"
            )
        self._lines.append(line)
        self._size += len(line)
        if idle or self._size >= BATCH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self.flush)

    def flush(self) -> None:
        """Write the gathered lines."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
        except (OSError, ValueError):  # a closed or broken stderr never fails a request
            return
