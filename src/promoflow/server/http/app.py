"""The FastAPI application: routers, error mapping, guards, and the in-process worker of the embedded mode."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...kit.clock import Clock, SystemClock
from .. import hooks
from ..config import Settings
from ..db import Database
from ..features import Composition, default_composition
from ..worker.thread import WorkerThread
from . import exception_handlers, openapi, ratelimit
from .accesslog import AccessLog
from .docs import install_docs
from .edge import AppState, FastRoutes, fast_first
from .middleware import ErrorHandler, Front

log = logging.getLogger("promoflow.api")

DESCRIPTION = """Voyado Engage-compatible promotions API (v2 and v3 paths).

Authenticate with the tenant's API key in the `apikey` header (or `Authorization: Bearer <key>`).
Errors are `{"statusCode", "errorCode", "message"}`. Operations marked `x-promoflow-extension` are
promoflow additions; the Engage flow never needs them. Every POST/PUT/PATCH accepts an `Idempotency-Key`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    run_worker: bool | None = None,
    composition: Composition | None = None,
    schedule: bool = False,
) -> FastAPI:
    """The API app. With ``run_worker`` it also runs a worker in-process (the embedded `serve`); ``schedule``
    lets that worker run the scheduled work (exports, file sweeps), as a server process does."""
    settings = settings or Settings()
    clock = clock or SystemClock()
    composition = composition or default_composition()
    hooks.install(composition)
    with_worker = settings.run_worker if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
        state = AppState(settings=settings, db=db, clock=clock, limiter=ratelimit.limiter_for(settings, db))
        app.state.promoflow = app.promoflow = state  # type: ignore[attr-defined]
        guard.state = state
        worker = None
        if with_worker:  # on an event loop of its own: see worker/thread.py
            worker = WorkerThread(settings.resolved_database_url(), clock, settings=settings,
                                  composition=composition, schedule=schedule)  # fmt: skip
            worker.start()
            state.extras["worker"] = worker
        for start in composition.startup:
            await start(state)
        try:
            yield
        finally:
            state.shutting_down = True
            for stop in composition.shutdown:
                await stop(state)
            if worker is not None:
                worker.stop()
                await worker.join()
            await db.dispose()
            if access is not None:
                access.flush()  # the lines gathered while requests overlapped

    app = App(
        title="promoflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by install_docs, not from a CDN
        redoc_url=None,
    )
    install_docs(app)
    exception_handlers.install(app)
    for router in composition.routers():
        router.routes[:] = fast_first(router.routes)  # a checkout's route is found first (idempotent)
        app.include_router(router)
    app.router.routes[:] = fast_first(app.router.routes)
    openapi.install(app)
    guard = _Guard()
    metrics = None
    if settings.metrics_enabled:  # it also counts what the guard and the fast lane answer
        from ..observability.http import RequestMetrics

        metrics = RequestMetrics(app)
    access = (
        AccessLog(holder=guard, json=settings.effective_access_log_format == "json")
        if settings.access_log
        else None
    )
    # One layer in front of the routes: access log and metrics around the guard (413/415/503) and the request's
    # text checks (encoding), which read paths, headers and JSON bodies before any route does.
    app.add_middleware(
        Front,
        max_body=settings.max_body_bytes, max_inflight=2000, holder=guard, metrics=metrics, access=access,
        fast=app.fast,
    )  # fmt: skip
    return app


class App(FastAPI):
    """FastAPI, with a request of a fast route (`edge.FastRoutes`: a checkout's fetch and redeem…) handed to the
    front layer at once. FastAPI's own layers before it would only pass such a request on — while FastAPI's
    OpenTelemetry instrumentation is off (no provider configured) and no app-wide body limit is set — and cost
    ~11 µs of a ~100 µs checkout request; the front layer answers an unexpected error itself, as the one that
    answers it with the app's handler would (`Front.serve`). Any other request, and every request while the
    instrumentation is on or the app runs in debug mode (tracebacks as answers), goes through them as usual."""

    promoflow: AppState | None = None  # the state, once started (also ``state.promoflow``; `edge.state_of`)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast = FastRoutes(self)
        self._front: tuple[Front, ErrorHandler] | None = None
        self._plain_until = 0.0

    def _plain(self) -> bool:
        """FastAPI's layers would only pass a request on (asked at most once a second: it reads three
        providers)."""
        now = time.monotonic()
        if now < self._plain_until:
            return True
        telemetry = getattr(self, "_native_telemetry", None)  # (FastAPI's instrumentation is recent)
        if telemetry is not None and telemetry.enabled():
            return False
        if getattr(self, "max_body_size", None) is not None or self.debug:
            return False
        self._plain_until = now + 1.0
        return True

    def _front_entry(self) -> tuple[Front, ErrorHandler]:
        """The front layer of the app's stack, and the app's handler of an unexpected error."""
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        layer: Any = self.middleware_stack
        while not isinstance(layer, Front):
            layer = layer.app
        handler = self.exception_handlers.get(500) or self.exception_handlers[Exception]
        return layer, cast(ErrorHandler, handler)  # `exception_handlers.install`: a coroutine function

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast.match(scope) is not None and self._plain():
            if self.root_path:
                scope["root_path"] = self.root_path
            scope["app"] = self
            if self._front is None:
                self._front = self._front_entry()
            front, on_error = self._front
            await front.serve(scope, receive, send, on_error)
            return
        await super().__call__(scope, receive, send)


class _Guard:
    """What the front layer reads (shutting down; the key cache of the access log), filled in when the app
    starts."""

    def __init__(self) -> None:
        self.state: AppState | None = None

    @property
    def shutting_down(self) -> bool:
        return self.state is not None and self.state.shutting_down
