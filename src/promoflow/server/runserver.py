"""Process entry points: the embedded `serve` (API + FTP + worker), `api` alone, `worker` alone."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import uvicorn

from ..kit.clock import SystemClock
from .config import Settings
from .db import Database, is_sqlite
from .http.app import create_app
from .migrate import upgrade
from .observability import multiproc

log = logging.getLogger("promoflow.serve")

# Services that run beside the API in `serve` (the FTP server registers here): start(settings) → stop().
ProcessService = Callable[[Settings], Callable[[], None]]
PROCESS_SERVICES: dict[str, ProcessService] = {}


def _ftp_service(settings: Settings) -> Callable[[], None]:
    from .transfer.ftp import start_ftp_service  # pyftpdlib is imported only when the FTP server runs

    return start_ftp_service(settings)


PROCESS_SERVICES["ftp"] = _ftp_service


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class _Server(uvicorn.Server):
    """Says where it listens once the socket is bound (tests and scripts wait for this line)."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        # Everything loaded at start-up lives for the whole process: keep it out of the collector's scans, and
        # collect less often, so a busy API does not stall in long GC pauses (tail latency).
        tune_gc()
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"promoflow api listening on http://{host}:{port}", flush=True)


def _uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def serve(settings: Settings, *, demo: bool = False, worker: bool = True, ftp: bool = True) -> None:
    configure_logging(settings.log_level)
    multiproc.prepare(settings, processes=1)
    url = settings.resolved_database_url()
    upgrade(url)
    if demo:
        from .demo import ensure_demo

        info = asyncio.run(ensure_demo(settings))
        print(json.dumps({"demo": info}), flush=True)
        base = f"http://{settings.host}:{settings.port or 8080}"
        print(
            "try:\n  curl -H 'apikey: {key}' '{base}/api/v2/contacts/{cid}/promotions?redemptionChannelType=POS'".format(
                key=info["apiKey"], base=base, cid=info["contactIds"][0]
            ),
            flush=True,
        )
    stops = []
    if ftp:
        for name, start in PROCESS_SERVICES.items():
            stops.append(start(settings))
            log.info("serve.started service=%s", name)
    # This process runs the scheduled work (the promotion export) in its worker.
    app = create_app(settings, run_worker=worker, schedule=True)
    try:
        _Server(_uvicorn_config(app, settings)).run()
    finally:
        for stop in stops:
            stop()


def app_factory() -> Any:
    """For `uvicorn --factory` / multi-process `api`: settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings, run_worker=False)
    tune_gc()
    return app


def api_only(settings: Settings, *, workers: int = 1) -> None:
    configure_logging(settings.log_level)
    url = settings.resolved_database_url()
    upgrade(url)
    if workers > 1:
        if is_sqlite(url):
            raise SystemExit("several API processes need PostgreSQL (SQLite has one writer); use --workers 1")
        # The child processes build their settings from the environment (and find the metrics directory there).
        os.environ["PROMOFLOW_DATABASE_URL"] = url
        os.environ["PROMOFLOW_DATA_DIR"] = str(settings.data_dir)
        metrics_dir = multiproc.prepare(settings, processes=workers)
        print(f"promoflow api starting {workers} processes on http://{settings.host}:{settings.port}", flush=True)
        try:
            uvicorn.run(
                "promoflow.server.runserver:app_factory",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=workers,
                log_level="warning",
                access_log=False,
            )
        finally:
            multiproc.finish(metrics_dir, settings)
        return
    multiproc.prepare(settings, processes=1)
    _Server(_uvicorn_config(create_app(settings, run_worker=False), settings)).run()


def worker_only(settings: Settings, *, once: bool = False) -> None:
    configure_logging(settings.log_level)
    url = settings.resolved_database_url()
    upgrade(url)
    from .features import default_composition
    from .worker.runner import Worker

    async def main() -> None:
        db = Database(url, pool_size=4)
        w = Worker(
            db,
            SystemClock(),
            settings=settings,
            composition=default_composition(),
            poll_seconds=settings.worker_poll_seconds,
            stall_after=timedelta(seconds=settings.worker_stall_seconds),
            schedule=True,  # this process runs the scheduled work (the promotion export)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, w.stop)
        # As in the API: start-up objects out of the collector's scans, and fewer young collections — an import
        # allocates (and frees) a few objects per line, and the default thresholds spent ~8% of its CPU in GC.
        tune_gc()
        stop_metrics = _worker_metrics(settings)
        print(f"promoflow worker {w.name} running", flush=True)
        try:
            if once:
                n = await w.run_until_idle()
                print(f"ran {n} jobs", flush=True)
            else:
                await w.run()
        finally:
            stop_metrics()
            await db.dispose()

    asyncio.run(main())


def _worker_metrics(settings: Settings) -> Callable[[], None]:
    """`promoflow worker` with PROMOFLOW_WORKER_METRICS_PORT: its job and import metrics on their own port."""
    if settings.worker_metrics_port is None:
        return lambda: None
    from prometheus_client import start_http_server

    server, thread = start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    host, port = server.server_address[:2]
    print(f"promoflow worker metrics on http://{host!s}:{port}/metrics", flush=True)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def ftp_only(settings: Settings) -> None:
    """Only the FTP server (scale out: its uploads reach the workers through the database)."""
    configure_logging(settings.log_level)
    upgrade(settings.resolved_database_url())
    from .transfer.ftp import run_ftp

    run_ftp(settings)
