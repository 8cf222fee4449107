"""Process entry points: the embedded `serve` (API + FTP + worker), `api` alone, `worker` alone."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from ..kit.clock import SystemClock
from ..kit.errtext import os_error
from ..kit.jsonlog import JsonFormatter
from .config import OperatorError, PortInUseError, Settings, describe_database
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


def migrate(url: str) -> None:
    """Apply the migrations the database lacks (server processes do this on start) and log which."""
    applied = upgrade(url)
    if applied:
        log.info(
            "db.migrated database=%r applied=%s",
            describe_database(url),
            ",".join(m.revision for m in applied),
        )


def bind_api_socket(settings: Settings) -> socket.socket:
    """The API's listening socket, bound here so that a busy port is one clear line (uvicorn would log it and
    exit) and so that `--workers N` knows the real port (`--port 0`) before the processes start."""
    host = settings.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"API port {settings.port} on {host} is in use (another promoflow?); pass --port N (0 picks a "
                "free one) or set PROMOFLOW_PORT"
            ) from None
        raise OperatorError(
            f"cannot listen on {host}:{settings.port}: {exc.strerror}; check --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def check_api_port(settings: Settings) -> None:
    """Fail in one line now if the API port is taken (or the host cannot be listened on); uvicorn then binds it
    itself, as it always has — the single-process server runs on uvicorn's own listening path."""
    bind_api_socket(settings).close()


def _errno(exc: OSError) -> int | None:
    """The error number, also of an OSError wrapped in another (pyftpdlib raises ``OSError(OSError(98, …))``)."""
    found = os_error(exc)
    return None if found is None else found.errno


def _start_service(name: str, start: ProcessService, settings: Settings) -> Callable[[], None]:
    try:
        return start(settings)
    except OSError as exc:
        if name == "ftp":
            _raise_ftp_listen_error(exc, settings, "pass --ftp-port N or set PROMOFLOW_FTP_PORT (0 picks a free "
                                                  "one), or --no-ftp")  # fmt: skip
        raise


def _raise_ftp_listen_error(exc: OSError, settings: Settings, remedy: str) -> None:
    """The FTP server could not listen: a port in use or an address the host lacks as one line naming the
    setting (``remedy``: how this command takes another port); any other error is left to the caller."""
    number = _errno(exc)
    if number == errno.EADDRINUSE:
        raise PortInUseError(
            f"FTP port {settings.ftp_port} on {settings.ftp_host} is in use (another promoflow or FTP server?); "
            f"{remedy}"
        ) from None
    if number == errno.EADDRNOTAVAIL:
        raise OperatorError(
            f"cannot listen for FTP on {settings.ftp_host}:{settings.ftp_port}: {exc.strerror}; check "
            "PROMOFLOW_FTP_HOST"
        ) from None


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(settings: Settings) -> None:
    """One handler on stderr for every logger of the process — promoflow's and the libraries' (uvicorn is told
    not to install its own, see ``_uvicorn_config``), at ``log_level``: text lines, or with the JSON log format
    one JSON object a line (``kit/jsonlog``)."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = settings.effective_log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO), handlers=[handler])


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


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's forwarded-header handling: off unless the operator names the proxies to trust. Its default trusts
    127.0.0.1, which would let any local process or a pass-through tunnel choose its client address (and so pass
    an IP allow-list or dodge the sign-in limit)."""
    trusted = (settings.forwarded_allow_ips or "").strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


def _uvicorn_config(app: Any, settings: Settings, loop: str = "auto") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        # uvicorn's own handlers would write its lines in its own format; through the root logger they are
        # written as every other line of the process (text or JSON).
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
        loop=loop,
        **proxy_options(settings),
    )


# `serve` on SQLite answers a fetch without ever suspending (its statements run on the event loop's thread:
# promotion/sqlitelane.py), and a server whose handlers never suspend keeps some connections waiting far longer
# than others on uvloop once it is saturated: a fetch's p99 ~400-800 ms on uvloop against ~40-150 ms on asyncio's
# own loop at the same rate, with or without the FTP server and the worker; a bare ASGI app that spends 300 µs per
# request shows the same (p99 0.6-1.3 s against 60-110 ms). bench/RESULTS.md, speed_bench.
SERVE_SQLITE_LOOP = "asyncio"


def serve(settings: Settings, *, demo: bool = False, worker: bool = True, ftp: bool = True) -> None:
    configure_logging(settings)
    multiproc.prepare(settings, processes=1)
    url = settings.resolved_database_url()
    migrate(url)
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
    check_api_port(settings)
    stops = []
    try:
        if ftp:
            for name, start in PROCESS_SERVICES.items():
                stops.append(_start_service(name, start, settings))
                log.info("serve.started service=%s", name)
        # This process runs the scheduled work (the promotion export) in its worker.
        app = create_app(settings, run_worker=worker, schedule=True)
        loop = SERVE_SQLITE_LOOP if is_sqlite(url) else "auto"
        _Server(_uvicorn_config(app, settings, loop)).run()
    finally:
        for stop in stops:
            stop()


def app_factory() -> Any:
    """For `uvicorn --factory` / multi-process `api`: settings from the environment."""
    settings = Settings()
    configure_logging(settings)
    app = create_app(settings, run_worker=False)
    if settings.api_ready_dir is not None:
        _report_ready(app, settings.api_ready_dir)
    tune_gc()
    return app


def _report_ready(app: Any, ready_dir: Path) -> None:
    """Tell the `api --workers N` parent (a file per process in ``ready_dir``) once this process has started."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            with contextlib.suppress(OSError):
                (ready_dir / f"{os.getpid()}.ready").touch()
            yield state

    app.router.lifespan_context = lifespan


def api_only(settings: Settings, *, workers: int = 1) -> None:
    configure_logging(settings)
    url = settings.resolved_database_url()
    if workers > 1 and is_sqlite(url):
        raise OperatorError("several API processes need PostgreSQL (SQLite has one writer); use --workers 1")
    migrate(url)
    if workers == 1:
        check_api_port(settings)
        multiproc.prepare(settings, processes=1)
        _Server(_uvicorn_config(create_app(settings, run_worker=False), settings)).run()
        return
    sock = bind_api_socket(settings)
    try:
        _run_processes(settings, url, sock, workers)
    finally:
        sock.close()


def _run_processes(settings: Settings, url: str, sock: socket.socket, workers: int) -> None:
    """`api --workers N`: N processes share the bound socket (uvicorn's supervisor restarts one that dies); this
    process says where they listen once all of them have started."""
    from uvicorn.supervisors import Multiprocess

    host, port = sock.getsockname()[:2]
    ready_dir = Path(tempfile.mkdtemp(prefix="promoflow-api-"))
    # The child processes build their settings from the environment.
    os.environ["PROMOFLOW_DATABASE_URL"] = url
    os.environ["PROMOFLOW_DATA_DIR"] = str(settings.data_dir)
    os.environ["PROMOFLOW_API_READY_DIR"] = str(ready_dir)
    os.environ["PROMOFLOW_ACCESS_LOG"] = "true" if settings.access_log else "false"
    os.environ["PROMOFLOW_LOG_FORMAT"] = settings.effective_log_format
    os.environ["PROMOFLOW_ACCESS_LOG_FORMAT"] = settings.effective_access_log_format
    # The child processes find the metrics directory in the environment too.
    metrics_dir = multiproc.prepare(settings, processes=workers)
    print(f"promoflow api starting {workers} processes on http://{host}:{port}", flush=True)
    done = threading.Event()

    def announce() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            if len(list(ready_dir.glob("*.ready"))) >= workers:
                print(
                    f"promoflow api listening on http://{host}:{port} ({workers} processes ready)", flush=True
                )
                return
            done.wait(0.1)  # polling files the child processes write; nothing else to wait on
        if not done.is_set():
            log.error(
                "api.processes_not_ready ready=%d expected=%d within_seconds=120",
                len(list(ready_dir.glob("*.ready"))),
                workers,
            )

    watcher = threading.Thread(target=announce, name="promoflow-api-ready", daemon=True)
    watcher.start()
    config = uvicorn.Config(
        "promoflow.server.runserver:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        log_config=None,  # as in _uvicorn_config
        access_log=False,
        timeout_graceful_shutdown=10,
        **proxy_options(settings),
    )
    try:
        try:
            supervisor = Multiprocess(config, sockets=[sock])
        except TypeError:  # uvicorn before 0.50 takes the target
            supervisor = Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])  # type: ignore[call-arg]
        supervisor.run()
    finally:
        done.set()
        watcher.join(5)
        shutil.rmtree(ready_dir, ignore_errors=True)
        multiproc.finish(metrics_dir, settings)


def worker_only(settings: Settings, *, once: bool = False) -> None:
    configure_logging(settings)
    url = settings.resolved_database_url()
    migrate(url)
    from .features import default_composition
    from .worker.runner import Worker

    async def main() -> None:
        # A metrics port that cannot be had stops the worker before it takes any job.
        stop_metrics = _worker_metrics(settings)
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

    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        if _errno(exc) == errno.EADDRINUSE:
            raise PortInUseError(
                f"worker metrics port {port} on {host} is in use (another promoflow worker?); set "
                "PROMOFLOW_WORKER_METRICS_PORT to a free port (0 picks one), or unset it for no metrics server"
            ) from None
        raise OperatorError(
            f"cannot serve the worker's metrics on {host}:{port}: {exc.strerror or exc}; check "
            "PROMOFLOW_WORKER_METRICS_HOST and PROMOFLOW_WORKER_METRICS_PORT"
        ) from None
    bound_host, bound_port = server.server_address[:2]
    print(f"promoflow worker metrics on http://{bound_host!s}:{bound_port}/metrics", flush=True)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def ftp_only(settings: Settings) -> None:
    """Only the FTP server (scale out: its uploads reach the workers through the database)."""
    configure_logging(settings)
    migrate(settings.resolved_database_url())
    from .transfer.ftp import run_ftp

    try:
        run_ftp(settings)
    except OSError as exc:
        _raise_ftp_listen_error(exc, settings, "pass --port N or set PROMOFLOW_FTP_PORT (0 picks a free one)")
        raise
