"""Small helpers shared by the admin routers: the unit of work and request facts."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from ...kit.guid import parse_guid
from ..exceptions import NotFoundError
from ..http.edge import AppState, state_of
from .web import AdminRoute


def admin_router() -> APIRouter:
    return APIRouter(prefix="/admin", route_class=AdminRoute, include_in_schema=False)


def now_of(request: Request) -> datetime:
    return state_of(request).clock.now()


@contextlib.asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection]:
    async with state_of(request).db.read() as conn:
        yield conn


@contextlib.asynccontextmanager
async def writing(request: Request) -> AsyncIterator[AsyncConnection]:
    """The request's one transaction: commits when the block ends, rolls back on any error."""
    async with state_of(request).db.write() as conn:
        yield conn


def wake_worker(request: Request) -> None:
    st: AppState = state_of(request)
    worker = st.extras.get("worker")
    if worker is not None:
        worker.wake()


def guid_or_404(value: str, what: str = "page") -> uuid.UUID:
    guid = parse_guid(value)
    if guid is None:
        raise NotFoundError(f"no such {what}")
    return guid


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
