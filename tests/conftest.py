"""Shared fixtures: real databases (a SQLite file and a PostgreSQL database made for this run, migrated once),
a fresh tenant per test (every row and query is tenant-scoped, so tests cannot see each other's data), the app
in-process with a controllable clock, and real `promoflow serve` processes.

PostgreSQL tests carry the `postgres` marker; the server is taken from PROMOFLOW_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), where a database `promoflow_test_<random>` is created and dropped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from promoflow.kit.clock import FrozenClock
from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.tenant_setup import create_tenant
from tests.support.openapi_check import check_response


@pytest.fixture(autouse=True, scope="session")
def _answers_match_the_openapi_document() -> Iterator[None]:
    """Every 2xx JSON answer of a TestClient is checked against the OpenAPI document, optional fields not
    nullable (tests/support/openapi_check.py)."""
    original = TestClient.send

    def send(self: TestClient, request: Any, **kw: Any) -> Any:
        response = original(self, request, **kw)
        if not kw.get("stream"):
            check_response(response)
        return response

    TestClient.send = send  # type: ignore[method-assign]
    yield
    TestClient.send = original  # type: ignore[method-assign]


PG_ADMIN_URL = os.environ.get("PROMOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "promoflow.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@contextmanager
def pg_database(prefix: str = "promoflow_test") -> Iterator[str]:
    """A migrated PostgreSQL database ``<prefix>_<random>`` of the caller alone, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses this runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def own_db(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test alone, of ``db_url``'s kind: for tests whose server or worker processes
    run every due job they find (the shared test database may hold other tests' jobs) or that count its rows."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
        upgrade(url)
        yield url
        return
    with pg_database("promoflow_own") as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(db_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0)


def make_tenant(settings: Settings, name: str | None = None, **kw: Any) -> dict[str, Any]:
    """A new tenant (unique name) with its API key, created through the same code as `promoflow tenant create`."""
    now = datetime.now(UTC)
    return asyncio.run(create_tenant(settings, now, name or f"t-{uuid.uuid4().hex[:12]}", **kw))


@dataclass
class Api:
    """The app in-process (real database, real HTTP handling) with a frozen clock."""

    client: TestClient
    clock: FrozenClock
    tenant: dict[str, Any]
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"apikey": self.tenant["apiKey"]}

    def as_tenant(self, tenant: dict[str, Any]) -> dict[str, str]:
        return {"apikey": tenant["apiKey"]}

    def new_tenant(self, **kw: Any) -> dict[str, Any]:
        return make_tenant(self.settings, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.headers)
        return self.client.get(path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.headers)
        return self.client.post(path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.headers)
        return self.client.put(path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.headers)
        return self.client.patch(path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.headers)
        return self.client.delete(path, **kw)

    def run_jobs(self) -> int:
        """Run the background jobs that are due, in this process, until none is left."""
        from promoflow.server.worker.runner import Worker

        app = self.client.app
        st = app.state.promoflow  # type: ignore[attr-defined]
        worker = Worker(st.db, self.clock, settings=self.settings, poll_seconds=0.05)
        assert self.client.portal is not None
        return int(self.client.portal.call(worker.run_until_idle))


START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def api(settings: Settings, clock: FrozenClock) -> Iterator[Api]:
    tenant = make_tenant(settings)
    app = create_app(settings, clock=clock, run_worker=False)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Api(client, clock, tenant, settings)
