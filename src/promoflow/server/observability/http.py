"""The request metrics, recorded by the front ASGI layer (`http.front`) around everything else (the guard's
413/415/503 and the fast lane's answers are counted too), labelling each request by its route *template* — never
the raw path, which holds ids.

Routed requests carry their route in the ASGI scope once the router has matched them. Requests answered before
routing (the fast lane, the guard) are matched against the same routes here; the result is cached by the path's
shape (GUID segments replaced), so a checkout's fetch costs one dictionary look-up. Redeem requests are also
counted by outcome: the status, the error code of a refusal (the redemption rule's reason) and whether the answer
was an idempotent replay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from starlette.routing import Mount
from starlette.types import Message, Scope

from ...wire.errors import ErrorCode
from . import metrics as metrics_mod

UNMATCHED = "unmatched"
_SHAPES_MAX = 2_000
# Answers on a redeem path that are not a verdict on the redemption (the request never reached the rule).
_NOT_AN_OUTCOME = frozenset(
    c.value
    for c in (
        ErrorCode.MISSING_API_KEY, ErrorCode.INVALID_API_KEY, ErrorCode.IP_NOT_ALLOWED, ErrorCode.TOO_MANY_REQUESTS,
        ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.UNSUPPORTED_MEDIA_TYPE, ErrorCode.SERVICE_UNAVAILABLE,
    )
)  # fmt: skip
_CODES = frozenset(c.value for c in ErrorCode)


_GUID_SEGMENT = re.compile(
    r"(?<=/)[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}(?=/|$)"
)


def _shape(path: str) -> str:
    """The path with its GUID segments replaced: the cache key of a template (ids would make it unbounded)."""
    return _GUID_SEGMENT.sub("{}", path)


class Redeem:
    """What the metrics keep of a redeem's answer: whether it was a replay, and the start of an error's body."""

    __slots__ = ("body", "replayed")

    def __init__(self) -> None:
        self.replayed = False
        self.body: list[bytes] | None = None

    def start(self, message: Message) -> None:
        for name, value in message.get("headers", ()):
            if name.lower() == b"idempotent-replayed" and value == b"true":
                self.replayed = True
        if message["status"] >= 400:
            self.body = []

    def chunk(self, message: Message) -> None:
        if self.body is not None and sum(map(len, self.body)) < 4096:
            self.body.append(message.get("body", b""))


class RequestMetrics:
    """Labels and records each answered request; the one front layer (`http.front.Front`) calls `record`."""

    def __init__(self, fastapi: Any) -> None:
        self.fastapi = fastapi
        self._patterns: list[tuple[re.Pattern[str], str, frozenset[str] | None]] | None = None
        self.metrics = metrics_mod.get()
        self._shapes: dict[tuple[str, str], str] = {}

    def _template(self, scope: Scope, root: str) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            if isinstance(route, Mount):  # an app mounted at a prefix: everything under it is one template
                return f"{root}{path}/{{path}}"
            return str(scope.get("root_path", root)) + path  # a route of a mounted router: under its prefix
        key = (scope["method"], _shape(scope["path"]))
        found = self._shapes.get(key)
        if found is None:
            found = self._match(scope)
            if len(self._shapes) >= _SHAPES_MAX:
                self._shapes.clear()
            self._shapes[key] = found
        return found

    def _match(self, scope: Scope) -> str:
        """The template of a request answered before routing (the fast lane, the guard), matched against the
        app's routes in their order, as the router would."""
        if self._patterns is None:
            self._patterns = [
                (re.compile(_regex(path)), path, methods)
                for path, methods in _routes(self.fastapi.router.routes)
            ]
        method, path = scope["method"], scope["path"]
        partial = None
        for regex, template, methods in self._patterns:
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED

    @staticmethod
    def redeem_of(scope: Scope) -> Redeem | None:
        """What to keep of the answer for `record`: something for a redeem request, None for any other."""
        return Redeem() if scope["method"] == "POST" and scope["path"].endswith("/redeem") else None

    def record(
        self, scope: Scope, root: str, status: int, seconds: float, redeem: Redeem | None, idle: bool
    ) -> None:
        """One answered request (``root``: its root path as it arrived); ``redeem`` for a redeem request;
        ``idle``: no other request is in flight (the tally is handed on at once, see `Metrics.flush`)."""
        self.metrics.request(scope["method"], self._template(scope, root), status, seconds)
        if redeem is not None:
            self._redeem(status, redeem.replayed, redeem.body)
        if idle:
            self.metrics.flush()

    def _redeem(self, status: int, replayed: bool, body: list[bytes] | None) -> None:
        if replayed:
            self.metrics.answered("replayed")
        elif status < 300:
            self.metrics.answered("redeemed")
        else:
            code = _error_code(b"".join(body or ()))
            if code in _NOT_AN_OUTCOME:
                return
            if code == ErrorCode.PROMOTION_ALREADY_REDEEMED.value:
                self.metrics.answered("already_redeemed")
            elif status >= 500:
                self.metrics.answered("error", code)
            else:
                self.metrics.answered("refused", code)


def _routes(routes: Any, prefix: str = "") -> Iterator[tuple[str, frozenset[str] | None]]:
    """(template, methods) of every route, through included routers (FastAPI keeps those as one entry holding
    the router and its prefix)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            methods = getattr(route, "methods", None)
            yield prefix + path, frozenset(methods) if methods else None
            continue
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _routes(inner.routes, prefix + (getattr(context, "prefix", "") or ""))


def _regex(template: str) -> str:
    parts = re.split(r"(\{[^}]+\})", template)
    return "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"


def _error_code(body: bytes) -> str:
    try:
        code = json.loads(body).get("errorCode")
    except (ValueError, AttributeError):
        return "Unknown"
    return code if code in _CODES else "Unknown"
