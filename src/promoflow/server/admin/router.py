"""The admin UI's routes, as one router the app factory includes (under /admin, not in the OpenAPI document)."""

from __future__ import annotations

from fastapi import APIRouter

from . import assign, audit, auth, contacts, imports, promotions, reports, settings


def router() -> APIRouter:
    r = APIRouter()
    for part in (auth, promotions, assign, contacts, imports, reports, audit, settings):
        r.include_router(part.router)
    return r
