"""The fast-path routes are tried first (`http.edge.fast_first`), and the router still picks, for every request,
the route it picked in the declared order: checked over every route of the app, a sample path for each, every
method, against the declared order (each router's routes in source order, the routers in the composition's)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from promoflow.server.config import Settings
from promoflow.server.features import default_composition
from promoflow.server.http.app import create_app
from promoflow.server.http.edge import EdgeRoute, fast_first, fast_path
from promoflow.server.observability.http import _routes

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _declared(router: APIRouter) -> list[Any]:
    # A decorated function's first line is its first decorator's: the order the routes were declared in.
    # An included router (no endpoint of its own, never moved here) keeps its place after the route before it.
    keyed, line = [], 0
    for i, route in enumerate(router.routes):
        endpoint = getattr(route, "endpoint", None)
        line = endpoint.__code__.co_firstlineno if endpoint is not None else line
        keyed.append((line, i, route))
    return [route for _, _, route in sorted(keyed, key=lambda k: k[:2])]


def _pick(table: list[tuple[str, frozenset[str] | None]], method: str, path: str) -> str | None:
    """What the router would run: the first full match, else the first partial (405), else nothing."""
    partial = None
    for template, methods in table:
        regex = "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{[^}]+\})", template)) + "$"  # fmt: skip
        if re.match(regex, path):
            if methods is None or method in methods:
                return f"{template} {sorted(methods or ())}"
            partial = partial or f"405 {template} {sorted(methods or ())}"
    return partial


def test_the_app_picks_the_same_route_for_every_request(settings: Settings) -> None:
    app = create_app(settings)
    served = list(_routes(app.router.routes))
    declared = []  # the routes of the app itself (docs), then the composition's routers
    for route in app.router.routes:
        if getattr(route, "original_router", None) is None:
            declared += list(_routes([route]))
    for router in default_composition().routers():
        declared += list(_routes(_declared(router)))
    assert sorted(map(str, served)) == sorted(map(str, declared))
    assert served != declared, "the fast routes moved to the front"
    fetch = ("/api/v2/contacts/{contact_id}/promotions", frozenset({"GET"}))
    assert served.index(fetch) < declared.index(fetch), "the checkout's fetch is found earlier"
    for template, _ in served:
        path = re.sub(r"\{[^}]+\}", "0f8fad5b-d9cb-469f-a165-70867728950e", template)
        for method in METHODS:
            assert _pick(served, method, path) == _pick(declared, method, path), (method, path)


def test_a_fast_route_stays_behind_a_route_it_could_share_a_request_with() -> None:
    async def fast(request: Any, ctx: Any) -> None:
        return None

    router = APIRouter(route_class=EdgeRoute)

    @router.get("/api/things/{thing}")
    def thing(thing: str) -> None: ...

    @router.get("/api/things/special")
    @fast_path(fast)
    def special() -> None: ...

    @router.post("/api/things")
    def create() -> None: ...

    @router.get("/api/widgets/{widget}")
    @fast_path(fast)
    def widget(widget: str) -> None: ...

    order = [r.path for r in fast_first(router.routes)]
    # /api/things/special would be answered by /api/things/{thing} in the declared order: it keeps its place.
    assert order == ["/api/widgets/{widget}", "/api/things/{thing}", "/api/things/special", "/api/things"]
