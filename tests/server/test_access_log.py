"""The HTTP access log (one line per request: method, path, status, ms, tenant; text or JSON; can be turned off)
and `/docs`, whose Swagger UI comes from the package, not from a CDN."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from tests.conftest import make_tenant

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO promoflow\.access (?P<method>[A-Z]+) (?P<path>\S+) "
    r"(?P<status>\d{3}) (?P<ms>\d+\.\d)ms tenant=(?P<tenant>\S+)$"
)


@pytest.fixture
def app_with(db_url: str, data_dir: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> tuple[TestClient, dict[str, Any]]:
        s = Settings(database_url=db_url, data_dir=data_dir, run_worker=False, default_rate_limit_per_second=0,
                     **settings)  # fmt: skip
        tenant = make_tenant(s)
        client = TestClient(create_app(s, run_worker=False))
        client.__enter__()
        clients.append(client)
        return client, tenant

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _access_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "promoflow.access" in line or '"http.request"' in line]


def test_one_line_per_request_with_method_path_status_time_and_tenant(app_with: Any, capsys: Any) -> None:
    client, tenant = app_with()
    capsys.readouterr()
    key = {"apikey": tenant["apiKey"]}
    client.get("/api/v2/contacts/count", headers=key)
    client.get(
        "/api/v2/contacts/id?email=ada%40example.com", headers={"Authorization": f"Bearer {tenant['apiKey']}"}
    )
    client.get("/api/v2/contacts/count", headers={"apikey": "pf_not-a-key"})
    client.post("/api/v2/contacts", content=b"x" * 10, headers={**key, "Content-Type": "text/plain"})
    client.get("/api/v2/contacts/%0Aforged%20200%20line", headers=key)
    lines = _access_lines(capsys.readouterr().err)
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    got = [(m["method"], m["path"], m["status"], m["tenant"]) for m in parsed if m]
    assert got == [
        ("GET", "/api/v2/contacts/count", "200", tenant["name"]),
        # The query string is left out of the log: look-ups carry e-mail addresses and phone numbers.
        ("GET", "/api/v2/contacts/id", "404", tenant["name"]),
        ("GET", "/api/v2/contacts/count", "401", "-"),
        ("POST", "/api/v2/contacts", "415", tenant["name"]),  # the guard's answers are logged too
        ("GET", "/api/v2/contacts/%0Aforged%20200%20line", "400", tenant["name"]),  # as sent: no forged lines
    ]
    assert "ada" not in "\n".join(lines)


def test_json_lines_when_asked(app_with: Any, capsys: Any) -> None:
    client, tenant = app_with(access_log_format="json")
    capsys.readouterr()
    client.get("/api/v2/contacts/count", headers={"apikey": tenant["apiKey"]})
    client.get("/healthz")
    lines = _access_lines(capsys.readouterr().err)
    records = [json.loads(line) for line in lines]
    for r in records:
        assert set(r) == {"ts", "level", "logger", "event", "method", "path", "status", "ms", "tenant"}
        assert (r["level"], r["logger"]) == ("INFO", "promoflow.access")
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["ts"]) and isinstance(r["ms"], float)
    assert [(r["event"], r["method"], r["path"], r["status"], r["tenant"]) for r in records] == [
        ("http.request", "GET", "/api/v2/contacts/count", 200, tenant["name"]),
        ("http.request", "GET", "/healthz", 200, None),
    ]


def test_the_access_log_can_be_turned_off(app_with: Any, capsys: Any) -> None:
    client, tenant = app_with(access_log=False)
    capsys.readouterr()
    assert client.get("/api/v2/contacts/count", headers={"apikey": tenant["apiKey"]}).status_code == 200
    assert _access_lines(capsys.readouterr().err) == []


def test_docs_page_loads_swagger_ui_from_the_package(app_with: Any) -> None:
    client, _ = app_with(access_log=False)
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # Nothing on the page names another host: every URL is a path on this server.
    assert not re.search(r"(https?:)?//[a-z0-9.-]+", html, re.I), re.findall(r"(?:https?:)?//[^\s'\"]+", html)
    assert (
        '"validatorUrl": null' in html
    )  # Swagger UI's online validator badge would call validator.swagger.io
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {r.split("?")[0] for r in refs} == {
        "/docs/static/swagger-ui.css",
        "/docs/static/favicon-32x32.png",
        "/docs/static/swagger-ui-bundle.js",
    }
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 500
    assert "SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").text
    assert client.get("/docs/static/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert "'/openapi.json'" in html and client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not served


@pytest.mark.parametrize(
    ("log_format", "access_log_format", "app_lines", "access_lines"),
    [
        (None, None, "text", "text"),
        ("json", None, "json", "json"),  # the access log follows the process's format …
        (None, "json", "json", "json"),  # … and the process follows the access log's when only that is set
        ("text", "json", "text", "json"),  # each set: each its own
        ("json", "text", "json", "text"),
    ],
)
def test_a_format_left_unset_follows_the_other(
    app_with: Any, capsys: Any, log_format: str | None, access_log_format: str | None, app_lines: str,
    access_lines: str,
) -> None:  # fmt: skip
    given = {k: v for k, v in {"log_format": log_format, "access_log_format": access_log_format}.items() if v}
    settings = Settings(**given)
    assert (settings.effective_log_format, settings.effective_access_log_format) == (app_lines, access_lines)
    client, tenant = app_with(**given)
    capsys.readouterr()
    client.get("/api/v2/contacts/count", headers={"apikey": tenant["apiKey"]})
    [line] = _access_lines(capsys.readouterr().err)
    assert (line.startswith("{") and json.loads(line)["event"] == "http.request") == (access_lines == "json")
