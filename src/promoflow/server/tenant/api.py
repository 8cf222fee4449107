"""The API-key extension: a tenant's named keys through the API, for a key with the admin scope (`promoflow key`
and the admin UI's Settings page do the same)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from ..http.edge import Edge, EdgeRoute, edge
from ..http.errors import InvalidIdempotencyKeyError
from ..http.openapi import EXTENSION, errors
from .errors import (
    AdminScopeRequiredError,
    ApiKeyExistsError,
    ApiKeyNotFoundError,
    InvalidApiKeyNameError,
    InvalidIpAllowListError,
)
from .keys import ApiKeyService, forget
from .schemas import ApiKeyIn, ApiKeyList, ApiKeyOut, NewApiKeyOut

router = APIRouter(route_class=EdgeRoute)


def _present(key: dict[str, Any]) -> dict[str, Any]:
    """Absent optional fields are left out (as everywhere in the API), not sent as null."""
    return {k: v for k, v in key.items() if v is not None}


TAG = "API keys"
_NAME = Path(min_length=1, max_length=255, description="The key's name")


async def admin_edge(e: Edge = Depends(edge)) -> Edge:
    """The edge of a key operation: only a key with the admin scope, and never with an Idempotency-Key (the
    answer holds a secret, which is not stored to be replayed)."""
    if e.ctx.key_scope != "admin":
        raise AdminScopeRequiredError("managing API keys needs a key with the admin scope")
    if e.request.headers.get("idempotency-key") is not None:
        raise InvalidIdempotencyKeyError("the API-key operations do not take an Idempotency-Key")
    return e


@router.get("/api/v2/promoflow/keys", response_model=ApiKeyList, tags=[TAG], openapi_extra=EXTENSION,
            responses=errors(AdminScopeRequiredError))  # fmt: skip
async def list_keys(e: Edge = Depends(admin_edge)) -> Response:
    """Extension: the tenant's API keys, active ones first (never their secrets)."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        keys = await ApiKeyService(now).list(conn, e.ctx.tenant_id)
        return {"keys": [_present(k.as_json(e.ctx.tz)) for k in keys]}

    return await e.read(work)


@router.post("/api/v2/promoflow/keys", response_model=NewApiKeyOut, status_code=201, tags=[TAG],
             openapi_extra=EXTENSION, responses=errors(AdminScopeRequiredError, InvalidApiKeyNameError,
                                                       InvalidIpAllowListError, ApiKeyExistsError))  # fmt: skip
async def create_key(body: ApiKeyIn, e: Edge = Depends(admin_edge)) -> Response:
    """Extension: a new named key; the answer holds its secret, shown this once (stored hashed). Not
    idempotent: an Idempotency-Key is refused."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        new = await ApiKeyService(now, e.ctx.actor).create(
            conn, e.ctx.tenant_id, body.name, allow=body.ip_allow_list, scope=body.scope
        )
        return _present(new.as_json(e.ctx.tz))

    return await e.write(work, 201)


@router.post("/api/v2/promoflow/keys/{name}/revoke", response_model=ApiKeyOut, tags=[TAG],
             openapi_extra=EXTENSION, responses=errors(AdminScopeRequiredError, ApiKeyNotFoundError))  # fmt: skip
async def revoke_key(name: str = _NAME, e: Edge = Depends(admin_edge)) -> Response:
    """Extension: revoke the active key of that name. This server refuses it at once; other API processes
    within PROMOFLOW_API_KEY_CACHE_SECONDS."""
    changed: list[uuid.UUID] = []

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        key = await ApiKeyService(now, e.ctx.actor).revoke(conn, e.ctx.tenant_id, name)
        changed.append(key.id)
        return _present(key.as_json(e.ctx.tz))

    response = await e.write(work)
    forget(e.state, changed[0])
    return response


@router.post("/api/v2/promoflow/keys/{name}/rotate", response_model=NewApiKeyOut, tags=[TAG],
             openapi_extra=EXTENSION, responses=errors(AdminScopeRequiredError, ApiKeyNotFoundError))  # fmt: skip
async def rotate_key(name: str = _NAME, e: Edge = Depends(admin_edge)) -> Response:
    """Extension: a new secret for the key of that name (same name, scope and allow-list); the old secret stops
    working (at once on this server, within PROMOFLOW_API_KEY_CACHE_SECONDS on others). Not idempotent."""
    changed: list[uuid.UUID] = []

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        new = await ApiKeyService(now, e.ctx.actor).rotate(conn, e.ctx.tenant_id, name)
        changed.append(new.key.id)
        return _present(new.as_json(e.ctx.tz))

    response = await e.write(work)
    forget(e.state, changed[0])
    return response
