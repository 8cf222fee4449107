"""Fixtures of the file-transfer tests: the real FTP server on loopback (in a thread of the test process, with the
test's clock), an ftplib client per tenant, the in-process app for setting data up through the API, and the
worker run synchronously (``run_jobs``) so no test sleeps to wait for an import."""

from __future__ import annotations

import ftplib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promoflow.server.transfer.files import FileStore
from promoflow.server.transfer.ftp import FtpServer
from promoflow.wire.xml import (
    IMPORT_RESULTS_DIR,
    ResultRecord,
    ResultSummary,
    load_import_result,
    result_file_name,
)
from tests.conftest import Api


@dataclass
class Transfer:
    api: Api
    server: FtpServer

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def store(self) -> FileStore:
        return FileStore(self.api.settings.data_dir)

    def ftp(self, tenant: dict[str, Any] | None = None) -> ftplib.FTP:
        tenant = tenant or self.api.tenant
        client = ftplib.FTP()
        client.connect("127.0.0.1", self.port, timeout=30)
        client.login(tenant["ftpUser"], tenant["ftpPassword"])
        return client

    def upload(self, folder: str, name: str, data: bytes, tenant: dict[str, Any] | None = None) -> str:
        client = self.ftp(tenant)
        try:
            return client.storbinary(f"STOR {folder}/{name}", io.BytesIO(data))
        finally:
            client.quit()

    def run_jobs(self) -> int:
        return self.api.run_jobs()

    def process(
        self, folder: str, name: str, data: bytes, tenant: dict[str, Any] | None = None
    ) -> tuple[ResultSummary, list[ResultRecord]]:
        """Upload one file (queued: 226), run the worker until the queue is empty, and read the file's result."""
        reply = self.upload(folder, name, data, tenant)
        assert reply.startswith("226"), reply
        self.run_jobs()
        return self.result(name, tenant)

    def root(self, tenant: dict[str, Any] | None = None) -> Path:
        tenant = tenant or self.api.tenant
        return self.store.tenant_root(__import__("uuid").UUID(tenant["tenantId"]))

    def result_path(self, name: str, tenant: dict[str, Any] | None = None) -> Path:
        """The result file of the latest upload named ``name``: the one its import (imports API) points at."""
        latest = next(i for i in self.imports(tenant) if i["fileName"] == name)
        assert latest["resultFile"] == f"{IMPORT_RESULTS_DIR}/{result_file_name(name, latest['id'])}", latest
        return self.root(tenant) / latest["resultFile"].lstrip("/")

    def result(
        self, name: str, tenant: dict[str, Any] | None = None
    ) -> tuple[ResultSummary, list[ResultRecord]]:
        path = self.result_path(name, tenant)
        summary, records = load_import_result(path)
        return summary, records

    def imports(self, tenant: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        headers = self.api.as_tenant(tenant) if tenant else self.api.headers
        r = self.api.get("/api/v2/imports", headers=headers, params={"count": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def import_detail(
        self, import_id: str, tenant: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        headers = self.api.as_tenant(tenant) if tenant else self.api.headers
        r = self.api.get(f"/api/v2/imports/{import_id}", headers=headers, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def transfer(api: Api) -> Iterator[Transfer]:
    settings = api.settings.model_copy(update={"ftp_port": 0, "ftp_auth_failed_delay_seconds": 0.05})
    server = FtpServer(settings, clock=api.clock).start()
    try:
        yield Transfer(api, server)
    finally:
        server.stop()
