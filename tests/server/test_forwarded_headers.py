"""X-Forwarded-For and X-Forwarded-Proto count only from the proxies the operator names
(`PROMOFLOW_FORWARDED_ALLOW_IPS`): by default a request's address is its connection's, so no client on the
server's host (or behind a tunnel that passes the header through) can choose an address an IP allow-list lets in,
dodge the admin sign-in limit, or make the session cookie look HTTPS-only."""

from __future__ import annotations

from pathlib import Path

import httpx

from promoflow.server.config import Settings
from tests.conftest import make_tenant
from tests.server.test_metrics import configure
from tests.support.servers import running_server

_FROM_INSIDE = {"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(sqlite_url: str, tmp_path: Path) -> None:
    tenant = make_tenant(Settings(database_url=sqlite_url, data_dir=tmp_path))
    configure(sqlite_url, tenant["name"], {"ipAllowList": "10.0.0.0/8"})
    key = {"apikey": tenant["apiKey"]}
    with (
        running_server(sqlite_url, tmp_path / "a", "--no-worker", "--no-ftp") as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        for headers in ({}, _FROM_INSIDE):
            r = http.get("/api/v2/contacts/count", headers={**key, **headers})
            assert r.status_code == 403 and r.json()["errorCode"] == "IpNotAllowed", headers
        cookie = http.get("/admin/login", headers=_FROM_INSIDE).headers["set-cookie"]
        assert "secure" not in cookie.lower()
    trusted = {"PROMOFLOW_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with (
        running_server(sqlite_url, tmp_path / "b", "--no-worker", "--no-ftp", env=trusted) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        r = http.get("/api/v2/contacts/count", headers=key)
        assert r.status_code == 403 and r.json()["errorCode"] == "IpNotAllowed"
        assert http.get("/api/v2/contacts/count", headers={**key, **_FROM_INSIDE}).json() == 0
        cookie = http.get("/admin/login", headers=_FROM_INSIDE).headers["set-cookie"]
        assert "secure" in cookie.lower()
