"""The FastAPI application: routers, error mapping, guards, and the in-process worker of the embedded mode."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

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
from .edge import AppState, fast_first
from .middleware import Front

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
        app.state.promoflow = state
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

    app = FastAPI(
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
        AccessLog(holder=guard, json=settings.access_log_format == "json") if settings.access_log else None
    )
    # One layer in front of the routes: access log and metrics around the guard (413/415/503) and the request's
    # text checks (encoding), which read paths, headers and JSON bodies before any route does.
    app.add_middleware(
        Front,
        max_body=settings.max_body_bytes, max_inflight=2000, holder=guard, metrics=metrics, access=access,
    )  # fmt: skip
    return app


class _Guard:
    """What the front layer reads (shutting down; the key cache of the access log), filled in when the app
    starts."""

    def __init__(self) -> None:
        self.state: AppState | None = None

    @property
    def shutting_down(self) -> bool:
        return self.state is not None and self.state.shutting_down
