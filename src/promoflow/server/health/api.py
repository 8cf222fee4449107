"""Liveness and readiness (no auth), for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from ..http.edge import state_of

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "database unreachable or shutting down"}})
async def readyz(request: Request) -> Response:
    """The database answers and the server is not shutting down."""
    st = state_of(request)
    if st.shutting_down:
        return JSONResponse({"status": "shutting-down"}, 503, headers={"Retry-After": "5"})
    try:
        async with st.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, 503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "database": st.db.dialect})
