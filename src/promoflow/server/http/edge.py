"""The edge of a request: who is calling (API key → tenant), rate limits, and the unit of work.

Routers stay thin: they call ``edge.read(fn)`` or ``edge.write(fn)`` with one service call; the edge opens the
transaction, commits once, applies idempotency keys, and serialises the answer. Authenticated routers use
`EdgeRoute`: authorisation once, before the body is read, and the route-level hook for fast paths (`fast_path`).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pydantic_core
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

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
    return request.app.state.promoflow  # type: ignore[no-any-return]


def _api_key(headers: Mapping[str, str]) -> str:
    raw = headers.get("apikey")
    if raw is None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            raw = token.strip()
    if not raw:
        raise MissingApiKeyError("no API key: send it in the apikey header")
    return raw.strip()


async def authorize(st: AppState, headers: Mapping[str, str], client_host: str | None) -> TenantContext:
    """The tenant behind the request's API key, after the key's IP allow-list and rate limit (A2, A16)."""
    raw = _api_key(headers)
    digest = hash_key(raw)
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
    wait = await st.limiter.acquire(
        ctx.tenant_id,
        ctx.key_id,
        float(ctx.settings.get("rateLimitPerSecond", st.settings.default_rate_limit_per_second)),
        int(ctx.settings.get("rateLimitBurst", st.settings.default_rate_limit_burst)),
    )
    if wait:
        raise TooManyRequestsError("too many requests for this API key", retry_after=wait)
    if st.key_usage is not None:
        st.key_usage.note(digest, ctx.key_id, mono)
    return ctx


_TENANT = "promoflow.tenant"


async def tenant_context(request: Request) -> TenantContext:
    """The request's tenant: authorised once per request (`EdgeRoute` does it before anything reads the body;
    the routed handler's dependency then finds it here)."""
    ctx: TenantContext | None = request.scope.get(_TENANT)
    if ctx is None:
        ctx = await authorize(
            state_of(request), request.headers, request.client.host if request.client else None
        )
        request.scope[_TENANT] = ctx
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
            if fast is not None:
                answer = await fast(request, ctx)
                if answer is not None:
                    return answer
            return await routed(request)

        return handler


def json_bytes(value: Any) -> bytes:
    return pydantic_core.to_json(value)


def json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
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
