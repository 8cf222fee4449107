"""The fast routes are answered ahead of the framework (`http.edge.FastRoutes`, handed on by `http.app.App` and
the front layer): only requests the router would give them, served as the route would serve them — the same
authorisation, the same error answers (an unexpected error a JSON 500), and a request the fast handler declines
answered by the routed handler with the body the fast handler read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.exceptions import NotFoundError
from promoflow.server.features import Feature, compose, default_composition
from promoflow.server.http.app import create_app
from promoflow.server.http.edge import EdgeRoute, fast_path, json_response
from promoflow.server.observability.http import _routes
from promoflow.server.tenant.service import TenantContext
from tests.conftest import make_tenant

from ._support import assert_error
from .test_route_order import METHODS, _pick

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def test_a_fast_route_takes_exactly_the_requests_the_router_gives_it(settings: Settings) -> None:
    """Over every route of the app, a sample path each and every method: the fast table finds a route for a
    request only when the router picks that route, and finds the router's pick whenever it is a fast route."""
    app = create_app(settings)
    served = list(_routes(app.router.routes))
    fast_templates = {
        (f.route.path, m) for routes in app.fast._build().values() for f in routes for m in f.methods
    }
    assert ("/api/v2/contacts/{contact_id}/promotions", "GET") in fast_templates
    assert ("/api/v2/promotions/codes/{promotion_id}/redeem", "POST") in fast_templates
    for template, _ in served:
        path = re.sub(r"\{[^}]+\}", GUID, template)
        for method in METHODS:
            hit = app.fast.match(_scope(method, path))
            picked = _pick(served, method, path)
            if hit is None:
                assert picked is None or (picked.split(" ")[0], method) not in fast_templates, (method, path)
            else:
                assert picked == f"{hit[0].route.path} {sorted(hit[0].methods)}", (method, path)
                assert hit[1] == hit[0].route.path_regex.match(path).groupdict()  # type: ignore[union-attr]


# A feature of test routes, mounted after the server's own.
_router = APIRouter(route_class=EdgeRoute)


async def _echo_fast(request: Request, ctx: TenantContext) -> Response | None:
    body = await request.body()
    if b"routed" in body:
        return None  # declined after reading the body: the routed handler must see it whole
    return json_response(b'{"by": "fast", "tenant": "%s"}' % ctx.name.encode(), 200)


@_router.post("/api/test/echo/{x}")
@fast_path(_echo_fast)
async def _echo(x: str, request: Request) -> Response:
    return json_response(b'{"by": "routed", "x": "%s", "body": %s}' % (x.encode(), await request.body()), 200)


async def _boom_fast(request: Request, ctx: TenantContext) -> Response | None:
    raise RuntimeError("a bug in a fast handler")


@_router.get("/api/test/boom")
@fast_path(_boom_fast)
async def _boom() -> Response: ...


async def _refuse_fast(request: Request, ctx: TenantContext) -> Response | None:
    raise NotFoundError("nothing here")


@_router.get("/api/test/refuse")
@fast_path(_refuse_fast)
async def _refuse() -> Response: ...


@_router.get("/api/test/shadow/{x}")
async def _shadow(x: str) -> Response:
    return json_response(b'{"by": "shadow"}', 200)


@_router.get("/api/test/shadow/special")
@fast_path(_echo_fast)  # never reached: the route before it takes its requests
async def _special() -> Response: ...


@_router.get("/api/test/items/latest")
async def _latest() -> Response:
    return json_response(b'{"by": "latest"}', 200)


@_router.get("/api/test/items/{x}")
@fast_path(_echo_fast)  # after a literal route it also matches: every other path is the fast route's
async def _item(x: str) -> Response: ...


@pytest.fixture
def client(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    composition = compose([*default_composition().features, Feature("test", routers=lambda: [_router])])
    tenant = make_tenant(settings)
    app = create_app(settings, composition=composition, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, {"apikey": tenant["apiKey"], "name": tenant["name"]}


def test_fast_routes_answer_as_their_route_would(client: tuple[TestClient, dict[str, str]]) -> None:
    c, t = client
    h = {"apikey": t["apikey"]}
    assert c.post("/api/test/echo/a", json={"x": 1}, headers=h).json() == {"by": "fast", "tenant": t["name"]}
    # declined after reading the body: the routed handler gets the body, its path parameter, no second look-up
    assert c.post("/api/test/echo/b", json={"routed": 1}, headers=h).json() == {
        "by": "routed", "x": "b", "body": {"routed": 1},
    }  # fmt: skip
    assert_error(c.post("/api/test/echo/a", json={"x": 1}), 401, "MissingApiKey")
    assert_error(c.get("/api/test/refuse", headers=h), 404, "NotFound")
    assert_error(c.get("/api/test/boom", headers=h), 500, "InternalError")
    # a route before it takes the request: never the fast handler
    assert c.get("/api/test/shadow/special", headers=h).json() == {"by": "shadow"}
    assert c.app.fast.match(_scope("GET", "/api/test/shadow/special")) is None  # type: ignore[attr-defined]
    # after a literal route: its path stays the literal route's, every other is the fast route's
    assert c.get("/api/test/items/latest", headers=h).json() == {"by": "latest"}
    assert c.app.fast.match(_scope("GET", "/api/test/items/latest")) is None  # type: ignore[attr-defined]
    assert c.get("/api/test/items/first", headers=h).json() == {"by": "fast", "tenant": t["name"]}
