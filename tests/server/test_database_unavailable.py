"""When PostgreSQL cannot be reached, the API answers 503 `ServiceUnavailable` with Retry-After — a retryable
answer for the integrator's retry policy, never a 500 — and serves again once the database is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from tests.conftest import PG_ADMIN_URL, make_tenant, pg_database

pytestmark = pytest.mark.postgres


def _terminate(admin: psycopg.Connection[Any], name: str) -> None:
    """Close every open connection to database ``name`` from the server's side."""
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def _connections(name: str, allowed: bool) -> None:
    """Let connections to database ``name`` in or not (superusers too), closing the open ones when not."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            _terminate(admin, name)


@pytest.fixture
def own_pg() -> Iterator[str]:
    with pg_database("promoflow_down") as url:
        try:
            yield url
        finally:
            _connections(url.rsplit("/", 1)[1], True)


@pytest.fixture
def served(own_pg: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """The app on its own database: its test client, a tenant's API key header and the database's name."""
    settings = Settings(
        database_url=own_pg, data_dir=tmp_path, run_worker=False, default_rate_limit_per_second=0
    )
    tenant = make_tenant(settings)
    with TestClient(create_app(settings, run_worker=False), raise_server_exceptions=True) as client:
        yield client, {"apikey": tenant["apiKey"]}, own_pg.rsplit("/", 1)[1]


def test_a_database_that_cannot_be_reached_answers_503_with_retry_after(
    served: tuple[TestClient, dict[str, str], str],
) -> None:
    client, headers, name = served
    created = client.post("/api/v2/contacts", json={"email": "up@example.com"}, headers=headers)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]

    _connections(name, False)
    for method, path, body in (
        ("POST", "/api/v2/contacts", {"email": "down@example.com"}),
        ("GET", f"/api/v2/contacts/{cid}", None),
        ("GET", f"/api/v2/contacts/{cid}/promotions", None),
    ):
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.json()["errorCode"] == "ServiceUnavailable"
        assert r.headers["Retry-After"] == "1"

    _connections(name, True)
    # Pooled connections closed by the server are replaced: within a few requests every answer is good again.
    answers = [client.get(f"/api/v2/contacts/{cid}", headers=headers).status_code for _ in range(5)]
    assert answers[-1] == 200 and set(answers) <= {200, 503}, answers
    again = client.post("/api/v2/contacts", json={"email": "down@example.com"}, headers=headers)
    assert again.status_code == 201, again.text


def test_connections_the_server_terminated_while_idle_never_answer_500(
    served: tuple[TestClient, dict[str, str], str],
) -> None:
    """A pooled connection whose backend was terminated while it sat idle (a PostgreSQL restart, an operator's
    `pg_terminate_backend`) fails its next statement in one of several ways, depending on how much of the server's
    goodbye the driver has read — one of them asyncpg's `InternalClientError`. Each must count as a lost
    connection: the quick path drops it and the routed path answers (201, or 503 retry), never a 500."""
    client, headers, name = served
    statuses = []
    for i in range(12):
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            _terminate(admin, name)
        r = client.post("/api/v2/contacts", json={"email": f"again-{i}@example.com"}, headers=headers)
        assert r.status_code in (201, 503), (i, r.status_code, r.text)
        statuses.append(r.status_code)

    # The integrator retries a 503 with the same request (the pool's other terminated connections answer 503
    # once each): each contact exists once in the end (200: the 503'd write had committed).
    def retried(method: str, path: str, body: dict[str, str] | None = None) -> Any:
        for _ in range(4):
            r = client.request(method, path, json=body, headers=headers)
            if r.status_code != 503:
                break
        return r

    for i, status in enumerate(statuses):
        if status == 503:
            again = retried("POST", "/api/v2/contacts", {"email": f"again-{i}@example.com"})
            assert again.status_code in (200, 201), (i, statuses, again.text)
    assert retried("GET", "/api/v2/contacts/count").json() == 12


def test_a_server_that_accepts_but_never_answers_fails_a_connection_in_seconds() -> None:
    """A PostgreSQL address whose peer takes the connection and then says nothing (a hung server, a stalled
    proxy): a new connection fails after the connect timeout, on the routed path and the fast lane alike,
    so the API answers 503 instead of holding the request until TCP gives up."""
    import asyncio
    import socket
    import time

    import asyncpg
    from sqlalchemy import text

    from promoflow.server.db import PG_CONNECT_TIMEOUT, Database

    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts nor answers
        port = silent.getsockname()[1]
        url = f"postgresql://postgres@127.0.0.1:{port}/silent"

        async def routed() -> None:
            db = Database(url, pool_size=1)
            try:
                async with db.read() as conn:
                    await conn.execute(text("SELECT 1"))
            finally:
                await db.dispose()

        for attempt in (routed, lambda: asyncpg.connect(url, timeout=PG_CONNECT_TIMEOUT)):
            began = time.monotonic()
            with pytest.raises((Exception, TimeoutError)):  # psycopg's, SQLAlchemy's or asyncpg's own error
                asyncio.run(asyncio.wait_for(attempt(), 60))  # type: ignore[no-untyped-call]
            took = time.monotonic() - began
            assert PG_CONNECT_TIMEOUT - 1 <= took < 45, took
