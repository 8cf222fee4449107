"""Rate limits (A16): per API key, a token bucket; over the limit → 429 with `Retry-After` and the A3 body. The
limit is the tenant's setting, or the server's default for tenants without one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from promoflow.server.db import Database
from promoflow.server.http.app import create_app
from promoflow.server.tenant.service import TenantService

from ._support import assert_error

# One token per 100 s: after the burst, the next request within a test is certainly over the limit.
SLOW = 0.01


def _configure(api: Any, name: str, changes: dict[str, Any]) -> None:
    async def run() -> None:
        db = Database(api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                await TenantService(datetime.now(UTC)).update_settings(conn, name, changes)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_a_tenant_over_its_limit_gets_429_with_retry_after(api: Any) -> None:
    limited = api.new_tenant()
    _configure(api, limited["name"], {"rateLimitPerSecond": SLOW, "rateLimitBurst": 3})
    h = api.as_tenant(limited)
    started = time.monotonic()
    for _ in range(3):
        assert api.get("/api/v2/contacts/count", headers=h).status_code == 200
    r = api.get("/api/v2/contacts/count", headers=h)
    assert_error(r, 429, "TooManyRequests")
    # One token takes 100 s to come back; the wait announced is that, less what has passed since the burst began
    # (seconds on a loaded machine).
    elapsed = time.monotonic() - started
    assert 100 - elapsed - 1 <= int(r.headers["Retry-After"]) <= 100
    # Writes are limited alike, and a refused request changes nothing.
    r = api.post("/api/v2/contacts", json={"email": "a@example.com"}, headers=h)
    assert_error(r, 429, "TooManyRequests")
    # Other tenants are not affected.
    assert api.get("/api/v2/contacts/count").status_code == 200
    # Unauthenticated endpoints are not limited.
    assert api.client.get("/healthz").status_code == 200


def test_the_limit_is_per_key(api: Any) -> None:
    limited = api.new_tenant()
    _configure(api, limited["name"], {"rateLimitPerSecond": SLOW, "rateLimitBurst": 1})

    async def second_key() -> str:
        db = Database(api.settings.resolved_database_url(), pool_size=1)
        try:
            async with db.write() as conn:
                row = await TenantService(datetime.now(UTC)).by_name(conn, limited["name"])
                return await TenantService(datetime.now(UTC)).add_key(conn, row.id, label="second till")
        finally:
            await db.dispose()

    other_key = asyncio.run(second_key())
    h = api.as_tenant(limited)
    assert api.get("/api/v2/contacts/count", headers=h).status_code == 200
    assert_error(api.get("/api/v2/contacts/count", headers=h), 429, "TooManyRequests")
    assert api.get("/api/v2/contacts/count", headers={"apikey": other_key}).status_code == 200


def test_tenants_without_a_limit_of_their_own_get_the_servers_default(
    api: Any, settings: Any, clock: Any
) -> None:
    app = create_app(
        settings.model_copy(update={"default_rate_limit_per_second": SLOW, "default_rate_limit_burst": 2}),
        clock=clock,
        run_worker=False,
    )
    plain = api.new_tenant()
    own = api.new_tenant()
    _configure(api, own["name"], {"rateLimitPerSecond": 1000, "rateLimitBurst": 1000})
    with TestClient(app) as client:
        h = {"apikey": plain["apiKey"]}
        assert [client.get("/api/v2/contacts/count", headers=h).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        h = {"apikey": own["apiKey"]}
        assert {client.get("/api/v2/contacts/count", headers=h).status_code for _ in range(5)} == {200}


def test_bad_limit_settings_are_refused(api: Any) -> None:
    import pytest

    from promoflow.server.tenant.errors import InvalidSettingError

    tenant = api.new_tenant()
    for changes in ({"rateLimitPerSecond": -1}, {"rateLimitPerSecond": "fast"}, {"rateLimitBurst": 0}):
        with pytest.raises(InvalidSettingError):
            _configure(api, tenant["name"], changes)


def test_a_server_shutting_down_answers_503_with_retry_after(api: Any) -> None:
    state = api.client.app.state.promoflow
    state.shutting_down = True  # what the app's lifespan sets when the process is told to stop
    try:
        r = api.get("/api/v2/contacts/count")
        assert_error(r, 503, "ServiceUnavailable")
        assert int(r.headers["Retry-After"]) > 0
        ready = api.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "shutting-down"
        assert api.client.get("/healthz").status_code == 200  # the process itself is still alive
    finally:
        state.shutting_down = False
    assert api.get("/api/v2/contacts/count").status_code == 200
