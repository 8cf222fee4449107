"""Fixtures of the server tests: a real `promoflow serve` process per database, shared by the whole run (it
starts in about a second, but dozens of tests use it), and a fresh tenant on it per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.server.config import Settings
from tests.conftest import make_tenant
from tests.support.openapi_check import check_response
from tests.support.servers import ServerProcess, start_server


@dataclass
class Live:
    """A running `promoflow serve --no-worker --no-ftp`; the tests run its jobs themselves, deterministically."""

    server: ServerProcess
    db_url: str
    data_dir: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.db_url, data_dir=self.data_dir, run_worker=False)

    def new_tenant(self, **kw: Any) -> dict[str, Any]:
        return make_tenant(self.settings, **kw)

    def client(self, tenant: dict[str, Any], **kw: Any) -> httpx.Client:
        # Its 2xx answers are checked against the OpenAPI document (tests/support/openapi_check.py).
        kw.setdefault("event_hooks", {"response": [check_response]})
        return httpx.Client(base_url=self.base_url, headers={"apikey": tenant["apiKey"]}, timeout=60, **kw)

    def run_jobs(self, workers: int = 1) -> int:
        """Run every due job in this process: ``workers`` real workers on the same database, side by side, until
        none is left. Returns how many jobs ran."""
        import asyncio

        from promoflow.kit.clock import SystemClock
        from promoflow.server.db import Database
        from promoflow.server.worker.runner import Worker

        async def one() -> int:
            db = Database(self.db_url, pool_size=4)
            try:
                return await Worker(
                    db, SystemClock(), settings=self.settings, poll_seconds=0.05
                ).run_until_idle()
            finally:
                await db.dispose()

        async def run() -> int:
            return sum(await asyncio.gather(*(one() for _ in range(workers))))

        return asyncio.run(run())


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One real server process per database for the whole run."""
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    data_dir = tmp_path_factory.mktemp(f"live-{request.param}")
    server = start_server(url, data_dir, "--no-worker", "--no-ftp")
    try:
        yield Live(server, url, data_dir)
    finally:
        server.stop()


@pytest.fixture
def live_tenant(live: Live) -> dict[str, Any]:
    return live.new_tenant()
