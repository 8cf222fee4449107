"""The edge of a request: who is calling (API key → tenant), rate limits, and the unit of work.

Routers stay thin: they call ``edge.read(fn)`` or ``edge.write(fn)`` with one service call; the edge opens the
transaction, commits once, applies idempotency keys, and serialises the answer. Authenticated routers use
`EdgeRoute`: authorisation once, before the body is read, and the route-level hook for fast paths (`fast_path`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pydantic_core
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette._utils import get_route_path
from starlette.convertors import Convertor
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...kit.clock import Clock
from ..config import Settings
from ..db import Database
from ..exceptions import PromoflowError, TooManyRequestsError
from ..tenant.keys import KeyUsage
from ..tenant.service import TenantContext, TenantService, hash_key
from . import idempotency
from .errors import InvalidApiKeyError, IpNotAllowedError, KeyTakenOverError, MissingApiKeyError
from .exception_handlers import error_body
from .ratelimit import RateLimiter, SharedRateLimiter

log = logging.getLogger("promoflow.api")

Work = Callable[[AsyncConnection, datetime], Awaitable[Any]]


@dataclass
class AppState:
    settings: Settings
    db: Database
    clock: Clock
    limiter: RateLimiter | SharedRateLimiter = field(default_factory=RateLimiter)
    key_cache: dict[str, tuple[TenantContext, float]] = field(default_factory=dict)
    key_refreshing: set[str] = field(default_factory=set)
    # The key cache's clock (tests move it past the cache's expiry instead of sleeping).
    monotonic: Callable[[], float] = time.monotonic
    key_usage: KeyUsage | None = None
    shutting_down: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def state_of(request: Request) -> AppState:
    """The app's state: an attribute of the app (`app.App`) — Starlette's ``app.state`` finds an attribute only
    after a failed look-up, which formats an AttributeError each time."""
    return request.app.promoflow  # type: ignore[no-any-return]


def _api_key(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The key in the first ``apikey`` header, else in ``Authorization: Bearer`` (the request's raw headers)."""
    raw: str | None = None
    auth: str | None = None
    for name, value in headers:
        if name == b"apikey":
            raw = value.decode("latin-1")
            break
        if name == b"authorization" and auth is None:
            auth = value.decode("latin-1")
    if raw is None:
        scheme, _, token = (auth or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            raw = token.strip()
    if not raw:
        raise MissingApiKeyError("no API key: send it in the apikey header")
    return raw.strip()


# The digests of the keys recently presented (a key's SHA-256 is the key cache's and the store's look-up).
_DIGESTS: dict[str, str] = {}


async def authorize(
    st: AppState, headers: Iterable[tuple[bytes, bytes]], client_host: str | None
) -> TenantContext:
    """The tenant behind the request's API key (``headers``: the raw ones), after the key's IP allow-list and
    rate limit (A2, A16)."""
    raw = _api_key(headers)
    digest = _DIGESTS.get(raw)
    if digest is None:
        if len(_DIGESTS) >= 10_000:
            _DIGESTS.clear()
        digest = _DIGESTS[raw] = hash_key(raw)
    cached = st.key_cache.get(digest)
    mono = st.monotonic()
    if cached is not None and (cached[1] > mono or digest in st.key_refreshing):
        # Fresh, or stale while one request is re-checking it: no stampede of look-ups when a key expires.
        ctx = cached[0]
    else:
        st.key_refreshing.add(digest)
        try:
            async with st.db.read() as conn:
                found = await TenantService(st.clock.now()).authenticate(conn, raw)
        finally:
            st.key_refreshing.discard(digest)
        if found is None:
            st.key_cache.pop(digest, None)
            raise InvalidApiKeyError("the API key is not valid")
        ctx = found
        if len(st.key_cache) > 10_000:
            st.key_cache.clear()
        st.key_cache[digest] = (ctx, mono + st.settings.api_key_cache_seconds)
    if ctx.ip_allowlist or ctx.key_allowlist:
        client = client_host or ""
        try:
            addr = ipaddress.ip_address(client)
        except ValueError:
            addr = None
        for allowed in (ctx.ip_allowlist, ctx.key_allowlist):
            if allowed and (addr is None or not any(addr in net for net in allowed)):
                raise IpNotAllowedError(f"requests from {client or 'this address'} are not allowed for this key")  # fmt: skip
    rate = float(ctx.settings.get("rateLimitPerSecond", st.settings.default_rate_limit_per_second))
    if rate > 0:  # (no limit: both limiters admit at once)
        burst = int(ctx.settings.get("rateLimitBurst", st.settings.default_rate_limit_burst))
        wait = await st.limiter.acquire(ctx.tenant_id, ctx.key_id, rate, burst)
        if wait:
            raise TooManyRequestsError("too many requests for this API key", retry_after=wait)
    if st.key_usage is not None:
        st.key_usage.note(digest, ctx.key_id, mono)
    return ctx


TENANT = "promoflow.tenant"  # the scope's key of the authorised tenant (`TenantContext`)
_DECLINED = "promoflow.fast_declined"  # the fast handler declined (`FastRoutes`): the routed handler answers
_MATCHED = "promoflow.fast_route"  # what `FastRoutes.match` found for the request


async def tenant_context(request: Request) -> TenantContext:
    """The request's tenant: authorised once per request (`EdgeRoute` does it before anything reads the body;
    the routed handler's dependency then finds it here)."""
    scope = request.scope
    ctx: TenantContext | None = scope.get(TENANT)
    if ctx is None:
        client = scope.get("client")
        ctx = await authorize(state_of(request), scope["headers"], client[0] if client else None)
        scope[TENANT] = ctx
    return ctx


FastHandler = Callable[[Request, TenantContext], Awaitable[Response | None]]
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def fast_path(handler: FastHandler) -> Callable[[_Endpoint], _Endpoint]:
    """Give an endpoint a fast handler: called with the authorised request before the routed handler, it answers
    (a Response) or declines (None: the routed handler answers, with the same tenant context). It must answer
    exactly what the routed handler would, and decline whatever it does not handle."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.fast_path = handler  # type: ignore[attr-defined]
        return endpoint

    return mark


class EdgeRoute(APIRoute):
    """The route of an authenticated endpoint. The caller is authorised (API key, IP allow-list, rate limit) once,
    before anything reads the body — a body the server cannot parse is never read for an unknown caller; then the
    endpoint's fast handler (`fast_path`), if any, may answer; otherwise the routed handler does, and its `edge`
    dependency reuses the tenant context. One mechanism for every fast path (the promotion fetch and redeem, the
    plain receipt), with the same OpenAPI as the routed handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        routed = super().get_route_handler()
        fast: FastHandler | None = getattr(self.endpoint, "fast_path", None)

        async def handler(request: Request) -> Response:
            ctx = await tenant_context(request)
            if fast is not None and _DECLINED not in request.scope:
                answer = await fast(request, ctx)
                if answer is not None:
                    return answer
            return await routed(request)

        return handler


class FastRequest(Request):
    """A fast route's request: its body read in a loop, without Starlette's ``stream`` (an async generator per
    request, which the event loop registers and finalises)."""

    _read: bytes | None = None

    async def body(self) -> bytes:
        if self._read is None:
            chunks = []
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self._read = b"".join(chunks)
        return self._read


@dataclass(frozen=True)
class FastRoute:
    """A route with a fast handler, as `FastRoutes` matches it."""

    route: EdgeRoute
    template: str  # the route's path with the prefixes of the routers that include it
    methods: frozenset[str]
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    handler: FastHandler
    # The paths of earlier literal routes it also matches (``/contacts/id`` before ``/contacts/{contact_id}``):
    # theirs, as the router would pick them.
    before: frozenset[str] = frozenset()


class FastRoutes:
    """The fast routes answered ahead of the framework: a request whose method and path a fast route matches, and
    no route before it could match, is the route's — the router would pick it too, only after the framework's
    layers and its scan of the routes. Served as `EdgeRoute` serves it: authorised (`tenant_context`), then the
    fast handler answers; an error becomes the answer the app's exception handlers give it; and a request the fast
    handler declines goes to the app (the router, the routed handler) with what the fast handler read of its body,
    its tenant context, and a mark that the fast handler declined it.

    The front layer (`middleware.Front`) calls `match` and `serve`; the table is built from the app's routes on
    first use."""

    def __init__(self, fastapi: Any) -> None:
        self.fastapi = fastapi
        self._routes: dict[str, list[FastRoute]] | None = None
        self._handlers: dict[Any, Callable[..., Any]] = {}
        # (method, slashes in the path) → the routes a path of that many segments can match, in order
        self._by_depth: dict[tuple[str, int], list[FastRoute]] = {}

    def _build(self) -> dict[str, list[FastRoute]]:
        by_method: dict[str, list[FastRoute]] = {}
        earlier: list[tuple[tuple[list[str | None], bool] | None, frozenset[str] | None]] = []
        for route, prefix in _leaves(self.fastapi.router.routes):
            methods = frozenset(route.methods) if getattr(route, "methods", None) else None
            shapes = _shapes(route, prefix)
            handler = getattr(getattr(route, "endpoint", None), "fast_path", None)
            if isinstance(route, EdgeRoute) and handler is not None and methods is not None:
                clashes = [
                    a for a, others in earlier for b in shapes if _overlap(a, b) and (others is None or others & methods)
                ]  # fmt: skip
                # An earlier route it overlaps keeps it off the table, unless every such route is one literal
                # path: then those paths stay theirs (`_match`).
                if all(_literal(a) is not None for a in clashes):
                    template = prefix + route.path
                    regex, _, convertors = compile_path(template)
                    before = frozenset(str(_literal(a)) for a in clashes)
                    for method in methods:
                        by_method.setdefault(method, []).append(
                            FastRoute(route, template, methods, regex, convertors, handler, before)
                        )
            earlier += [(shape, methods) for shape in shapes]
        for key, value in self.fastapi.exception_handlers.items():
            if key not in (500, Exception):  # the server-error layer's, outside the front layer
                self._handlers[key] = value
        return by_method

    def match(self, scope: Scope) -> tuple[FastRoute, dict[str, Any]] | None:
        """The fast route of the request and its path parameters, or None (kept in the scope: asked twice)."""
        if _MATCHED in scope:
            return scope[_MATCHED]  # type: ignore[no-any-return]
        hit = scope[_MATCHED] = self._match(scope)
        return hit

    def _match(self, scope: Scope) -> tuple[FastRoute, dict[str, Any]] | None:
        path = get_route_path(scope)
        key = (scope["method"], path.count("/"))
        candidates = self._by_depth.get(key)
        if candidates is None:
            candidates = self._candidates(*key)
        for fast in candidates:
            m = fast.regex.match(path)
            if m is not None:
                if path in fast.before:
                    return None  # an earlier route's literal path (not a fast route's: it would have matched)
                return fast, {k: fast.convertors[k].convert(v) for k, v in m.groupdict().items()}
        return None

    def _candidates(self, method: str, slashes: int) -> list[FastRoute]:
        """The routes of ``method`` whose template has ``slashes`` slashes (or a convertor that may match several
        segments), in their order."""
        if self._routes is None:
            self._routes = self._build()
        out = [
            fast
            for fast in self._routes.get(method, ())
            if fast.template.count("/") == slashes or ":" in fast.template
        ]
        if len(self._by_depth) < 1_000:
            self._by_depth[(method, slashes)] = out
        return out

    async def serve(
        self,
        fast: FastRoute,
        params: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
    ) -> None:
        """Answer a request `match` found (``app``: the rest of the stack, for a request the handler declines)."""
        scope["path_params"] = params
        scope["endpoint"] = fast.route.endpoint
        scope["route"] = fast.route
        read: list[Message] = []

        async def reading() -> Message:
            message = await receive()
            read.append(message)
            return message

        request = FastRequest(scope, reading)
        try:
            answer = await fast.handler(request, await tenant_context(request))
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer = await handler(request, exc)
        if answer is None:
            scope[_DECLINED] = True

            async def replayed() -> Message:
                return read.pop(0) if read else await receive()

            await app(scope, replayed, send)
            return
        await answer(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        """The app's handler of ``exc``, as the framework's exception layer looks it up."""
        if isinstance(exc, HTTPException) and exc.status_code in self._handlers:
            return self._handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _leaves(routes: list[Any], prefix: str = "") -> Iterator[tuple[Any, str]]:
    """Every route in the order the router tries them, with the prefix of the routers it is included by."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _leaves(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        else:
            yield route, prefix


def json_bytes(value: Any) -> bytes:
    return pydantic_core.to_json(value)


class _Json(Response):
    """A JSON answer with no headers of its own: the two headers Starlette's `Response` would give it, built
    directly."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]


def json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    if headers is None and status >= 200 and status not in (204, 304):
        return _Json(body, status)
    return Response(body, status, headers=headers, media_type="application/json")


class Edge:
    def __init__(self, request: Request, ctx: TenantContext) -> None:
        self.request = request
        self.ctx = ctx
        self.state = state_of(request)

    @property
    def now(self) -> datetime:
        return self.state.clock.now()

    def wake_worker(self) -> None:
        worker = self.state.extras.get("worker")
        if worker is not None:
            worker.wake()

    async def read(self, work: Work, status: int = 200) -> Response:
        async with self.state.db.read() as conn:
            result = await work(conn, self.now)
        return json_response(json_bytes(result), status)

    async def write(self, work: Work, status: int | Callable[[Any], int] = 200) -> Response:
        """Run ``work`` in one transaction; with an Idempotency-Key, store its answer in that transaction."""
        db, settings = self.state.db, self.state.settings
        key = self.request.headers.get("idempotency-key")
        now = self.now
        if key is None:
            async with db.write() as conn:
                result = await work(conn, now)
            code = status(result) if callable(status) else status
            return json_response(json_bytes(result), code)
        key = idempotency.check_key(key)
        tenant_id = self.ctx.tenant_id
        fp = idempotency.fingerprint(
            self.request.method, self.request.url.path, self.request.url.query, await self.request.body()
        )
        lock = timedelta(seconds=settings.idempotency_lock_seconds)
        owner = now + lock  # the claim's lock expiry identifies this request's hold on the key
        async with db.write() as conn:
            stored = await idempotency.claim(
                conn, tenant_id, key, fp, now, lock=lock, ttl=timedelta(hours=settings.idempotency_ttl_hours)
            )
        if stored is not None:
            return json_response(stored.body, stored.status, {"Idempotent-Replayed": "true"})
        try:
            async with db.write() as conn:
                result = await work(conn, now)
                code = status(result) if callable(status) else status
                body = json_bytes(result)
                await idempotency.complete(conn, tenant_id, key, code, body, owner=owner)
            return json_response(body, code)
        except KeyTakenOverError:
            raise  # nothing of ours committed; the request that took the key over has the answer
        except PromoflowError as exc:
            if exc.status < 500:
                # A definite answer (4xx) is the outcome of this key: replay it like a success.
                err_status, err_body, _ = error_body(exc)
                async with db.write() as conn:
                    await idempotency.complete(
                        conn, tenant_id, key, err_status, json_bytes(err_body), owner=owner
                    )
            else:
                await self._release(key, owner)
            raise
        except BaseException:
            await self._release(key, owner)
            raise

    async def _release(self, key: str, owner: datetime) -> None:
        try:
            async with self.state.db.write() as conn:
                await idempotency.release(conn, self.ctx.tenant_id, key, owner=owner)
        except Exception:  # the claim then simply expires
            log.warning("idempotency.release_failed key=%s", key, exc_info=True)


async def edge(request: Request, ctx: TenantContext = Depends(tenant_context)) -> Edge:
    return Edge(request, ctx)


# ------------------------------------------------------------------------------------------------ route order
# The router tries routes in order, and for an included router matches its routes twice (to pick it, then to
# handle): a checkout's fetch or redeem, late in the list, paid ~145 µs of regex scans before its handler ran.
# `fast_first` moves the routes with a fast handler to the front — each only past routes that no request could
# match together with it, so the router still picks the same route for every request, only sooner.

_ANY = None  # a segment that matches any one non-empty segment (a str path parameter)


def _shape_of(template: str) -> tuple[list[str | None], bool] | None:
    """The template's segments (None: a parameter) and whether it matches deeper paths too (a mount); None when
    the template uses a convertor (``{x:path}``, ``{x:int}``…) — then it is taken to overlap everything."""
    segments: list[str | None] = []
    for part in template.split("/"):
        if part.startswith("{") and part.endswith("}") and "{" not in part[1:]:
            if ":" in part:
                return None
            segments.append(_ANY)
        elif "{" in part or "}" in part:
            return None
        else:
            segments.append(part)
    return segments, False


def _literal(shape: tuple[list[str | None], bool] | None) -> str | None:
    """The one path a shape matches when it has no parameter (and is not a mount's), else None."""
    if shape is None or shape[1] or _ANY in shape[0]:
        return None
    return "/".join(str(segment) for segment in shape[0])


def _overlap(a: tuple[list[str | None], bool] | None, b: tuple[list[str | None], bool] | None) -> bool:
    """Could one path match both (ignoring methods: a 405's Allow header comes from the first partial match)?"""
    if a is None or b is None:
        return True
    (sa, deep_a), (sb, deep_b) = a, b
    if len(sa) != len(sb) and not ((deep_a and len(sb) >= len(sa)) or (deep_b and len(sa) >= len(sb))):
        return False
    for x, y in zip(sa, sb, strict=False):
        if x is _ANY and y is _ANY:
            continue
        if x is _ANY or y is _ANY:
            if (y if x is _ANY else x) == "":  # a parameter never matches an empty segment
                return False
            continue
        if x != y:
            return False
    return True


def _shapes(route: Any, prefix: str = "") -> list[tuple[list[str | None], bool] | None]:
    """Every shape the entry can match: a route's, a mount's (and deeper), an included router's routes'."""
    from starlette.routing import Mount, Route

    inner = getattr(route, "original_router", None)
    if inner is not None:
        context = getattr(route, "include_context", None)
        deeper = prefix + (getattr(context, "prefix", "") or "")
        return [shape for r in inner.routes for shape in _shapes(r, deeper)]
    path = getattr(route, "path", None)
    if isinstance(route, Mount) and isinstance(path, str):
        shape = _shape_of(prefix + path)
        return [None if shape is None else (shape[0], True)]
    if isinstance(route, Route) and isinstance(path, str):
        return [_shape_of(prefix + path)]
    return [None]  # anything else (a host, a websocket route…): assume it overlaps


def _is_fast(route: Any) -> bool:
    inner = getattr(route, "original_router", None)
    if inner is not None:
        return any(_is_fast(r) for r in inner.routes)
    return isinstance(route, EdgeRoute) and getattr(route.endpoint, "fast_path", None) is not None


def fast_first(routes: list[Any]) -> list[Any]:
    """``routes`` with the fast-path routes (or the included routers holding them) moved to the front, in their
    own order, each past every earlier route it cannot share a request with; one that could stays where it is."""
    moved: list[Any] = []
    rest: list[Any] = []
    for route in routes:
        if _is_fast(route):
            mine = _shapes(route)
            if not any(_overlap(a, b) for other in rest for a in _shapes(other) for b in mine):
                moved.append(route)
                continue
        rest.append(route)
    return moved + rest
