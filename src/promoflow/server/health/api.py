"""Liveness and readiness (no auth), for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from ...kit.errtext import error_line
from ..config import Settings
from ..http.edge import state_of
from ..observability.collect import FILE_IMPORT_JOB, queue_snapshot

router = APIRouter(tags=["health"])

_NOT_READY = {"Retry-After": "5"}


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"})


READY_DB_SECONDS = 3.0
"""How long the readiness check waits for the database's answer to ``SELECT 1``."""


@router.get(
    "/readyz",
    responses={503: {"description": "database unreachable, a check over its threshold, or shutting down"}},
)
async def readyz(request: Request) -> Response:
    """The database answers, the job queue is not too late and the data dir's disk has room (thresholds are
    settings: docs/operators.md); each check says what it measured. 503 when one fails or while shutting down."""
    st = state_of(request)
    if st.shutting_down:
        return JSONResponse({"status": "shutting-down"}, 503, headers=_NOT_READY)
    started = time.perf_counter()

    async def select_one() -> None:
        async with st.db.read() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(select_one(), READY_DB_SECONDS)
    except TimeoutError:
        reason = f"the database did not answer within {READY_DB_SECONDS:g} s"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503, headers=_NOT_READY)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {error_line(exc, 200)}"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503, headers=_NOT_READY)
    checks: dict[str, dict[str, Any]] = {
        "database": {"status": "ok", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}
    }
    checks["queue"] = await _queue(request)
    checks["disk"] = _disk(st.settings)
    ready = all(c["status"] == "ok" for c in checks.values())
    body = {"status": "ready" if ready else "not-ready", "database": st.db.dialect, "checks": checks}
    return JSONResponse(body, 200 if ready else 503, headers=None if ready else _NOT_READY)


async def _queue(request: Request) -> dict[str, Any]:
    st = state_of(request)
    limit = st.settings.ready_max_queue_age_seconds
    figures = await queue_snapshot(st).get()
    if figures is None:
        return {"status": "unknown", "reason": "the job table could not be read"}
    # Judged on the jobs a free worker could take: a tenant's next file waiting for its running import is no
    # sign that this process (in `serve`, its worker) is unwell.
    waiting = figures.runnable_lag()
    return {
        "status": "failing" if limit > 0 and waiting > limit else "ok",
        "queued": sum(n for (_, status), n in figures.counts.items() if status == "queued"),
        "running": sum(n for (_, status), n in figures.counts.items() if status == "running"),
        "lagSeconds": round(figures.lag(), 1),
        "runnableLagSeconds": round(waiting, 1),
        "maxLagSeconds": limit or None,
        "filesWaiting": figures.counts.get((FILE_IMPORT_JOB, "queued"), 0),
        "oldestFileWaitingSeconds": round(figures.waiting_age(FILE_IMPORT_JOB), 1),
    }


def _disk(settings: Settings) -> dict[str, Any]:
    path = Path(settings.data_dir).resolve()
    while not path.exists() and path != path.parent:  # not made yet: the file system it will be made on
        path = path.parent
    free = shutil.disk_usage(path).free
    minimum = settings.ready_min_free_disk_mb * 1024 * 1024
    return {
        "status": "ok" if free >= minimum else "failing",
        "freeBytes": free,
        "minFreeBytes": minimum,
    }
