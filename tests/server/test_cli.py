"""The operator interface, run as the real `promoflow` command (a subprocess) against fresh SQLite and PostgreSQL
databases: `db upgrade`, `db check`, `tenant create/list/rotate-key`, the environment variables, and a real
`promoflow serve` that refuses a rotated key and stops cleanly. Plus `/healthz`, `/readyz` and `/openapi.json`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from promoflow.server.config import Settings
from promoflow.server.http.app import create_app
from tests.conftest import PG_ADMIN_URL
from tests.support.servers import start_server

from ._support import GUID_TEXT, assert_error


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"promoflow_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROMOFLOW_")}


def promoflow_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "promoflow.cli", *args],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def promoflow(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The same command line, run in this process (each `python -m promoflow.cli` start costs most of a second)."""
    from promoflow.cli.main import app

    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMOFLOW_")}
    result = CliRunner().invoke(app, list(args), env={**unset, **(env or {})}, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_db_upgrade_and_check(fresh_db: str, tmp_path: Path) -> None:
    where = ("--database-url", fresh_db, "--data-dir", str(tmp_path))
    before = promoflow("db", "check", *where)
    assert before.returncode == 1 and "promoflow db upgrade" in before.stderr
    up = promoflow("db", "upgrade", *where)
    assert up.returncode == 0, up.stderr
    check = promoflow("db", "check", *where)
    assert check.returncode == 0, check.stderr
    assert "database matches the models" in check.stderr
    assert promoflow("db", "upgrade", *where).returncode == 0  # idempotent
    # The environment variable works as well as the flag.
    env = promoflow(
        "db", "check", env={"PROMOFLOW_DATABASE_URL": fresh_db, "PROMOFLOW_DATA_DIR": str(tmp_path)}
    )
    assert env.returncode == 0, env.stderr


def test_tenant_create_list_rotate(fresh_db: str, tmp_path: Path) -> None:
    where = ("--database-url", fresh_db, "--data-dir", str(tmp_path))
    # Neither `tenant create` nor `tenant list` changes the schema: on a database never migrated both refuse alike.
    for args in (("create", "acme", "--json"), ("list", "--json")):
        refused = promoflow("tenant", *args, *where)
        assert refused.returncode == 1, refused
        assert "run `promoflow db upgrade`" in refused.stderr
        assert json.loads(refused.stdout)["errorCode"] == "DatabaseMissing"
    assert promoflow("db", "upgrade", *where).returncode == 0
    created = promoflow("tenant", "create", "acme", "--json", *where)
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert re.match(GUID_TEXT, info["tenantId"]) and info["name"] == "acme"
    assert info["apiKey"].startswith("pf_") and len(info["apiKey"]) > 30
    plain = promoflow(
        "tenant", "create", "globex", "--time-zone", "America/New_York", "--currency", "usd", *where
    )
    assert plain.returncode == 0, plain.stderr
    globex_key = plain.stdout.strip().splitlines()[-1]  # the key alone on stdout, for scripts
    assert globex_key.startswith("pf_")

    listed = promoflow("tenant", "list", "--json", env={"PROMOFLOW_DATABASE_URL": fresh_db})
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"acme", "globex"}
    assert rows["acme"]["tenantId"] == info["tenantId"] and rows["acme"]["activeKeys"] == 1
    assert (rows["globex"]["timeZone"], rows["globex"]["currency"]) == ("America/New_York", "USD")
    table = promoflow("tenant", "list", *where)
    assert table.returncode == 0 and "acme" in table.stdout and "globex" in table.stdout
    assert info["tenantId"] in table.stdout  # whole ids, never cut to the terminal's width

    dup = promoflow("tenant", "create", "acme", *where)
    assert dup.returncode == 2 and "TenantExists" in dup.stderr
    dup_json = promoflow("tenant", "create", "acme", "--json", *where)
    assert dup_json.returncode == 2
    assert json.loads(dup_json.stdout) == {
        "statusCode": 409,
        "errorCode": "TenantExists",
        "message": "tenant 'acme' already exists",
    }
    bad_zone = promoflow("tenant", "create", "x", "--time-zone", "Mars/Olympus", *where)
    assert bad_zone.returncode == 2 and "InvalidTimeZone" in bad_zone.stderr
    assert "x" not in {r["name"] for r in json.loads(promoflow("tenant", "list", "--json", *where).stdout)}

    rotated = promoflow("tenant", "rotate-key", "acme", "--json", *where)
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)["apiKey"]
    assert new_key != info["apiKey"]
    missing = promoflow("tenant", "rotate-key", "nobody", *where)
    assert missing.returncode == 2 and "TenantNotFound" in missing.stderr

    settings = Settings(database_url=fresh_db, data_dir=tmp_path, run_worker=False, api_key_cache_seconds=0)
    with TestClient(create_app(settings, run_worker=False)) as client:
        assert_error(
            client.get("/api/v2/contacts/count", headers={"apikey": info["apiKey"]}), 401, "InvalidApiKey"
        )
        assert client.get("/api/v2/contacts/count", headers={"apikey": new_key}).json() == 0
        assert client.get("/api/v2/contacts/count", headers={"apikey": globex_key}).json() == 0


def test_tenant_set_help_lists_every_setting_the_command_accepts() -> None:
    """The help's list is the validation's (`setting_names`): each name listed is accepted, none is missing —
    clockSkewSeconds was, while the list was written out by hand."""
    from promoflow.server.tenant.service import setting_names

    done = promoflow_process("tenant", "set", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())  # rich's box and line wrapping undone
    listed = re.search(r"Settings: (.*?)\. ╭", text)
    assert listed is not None, done.stdout
    names = listed.group(1).split(", ")
    assert "clockSkewSeconds" in names
    assert sorted(names) == sorted(setting_names())


def test_a_running_server_refuses_a_key_rotated_by_the_cli(tmp_path: Path, sqlite_url: str) -> None:
    """`promoflow serve` and `promoflow tenant rotate-key` as two processes on one database; the server trusts a
    verified key for PROMOFLOW_API_KEY_CACHE_SECONDS (0 here), then looks it up again."""
    data = tmp_path / "data"
    name = f"rot-{uuid.uuid4().hex[:8]}"
    created = promoflow(
        "tenant", "create", name, "--json", "--database-url", sqlite_url, "--data-dir", str(data)
    )
    old_key = json.loads(created.stdout)["apiKey"]
    server = start_server(sqlite_url, data, "--no-ftp", env={"PROMOFLOW_API_KEY_CACHE_SECONDS": "0"})
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            assert http.get("/api/v2/contacts/count", headers={"apikey": old_key}).status_code == 200
            rotated = promoflow(
                "tenant", "rotate-key", name, "--database-url", sqlite_url, "--data-dir", str(data)
            )
            new_key = rotated.stdout.strip()
            assert_error(
                http.get("/api/v2/contacts/count", headers={"apikey": old_key}), 401, "InvalidApiKey"
            )
            r = http.get("/api/v2/contacts/count", headers={"Authorization": f"Bearer {new_key}"})
            assert r.status_code == 200
    finally:
        code = server.stop(signal.SIGINT)
    output = "".join(server.output)
    # It said where it listens, ran its worker, and stopped in order on SIGINT.
    assert f"promoflow api listening on {server.base_url}" in output
    assert "worker.started" in output and "worker.stopped" in output
    assert "Traceback" not in output
    assert code in (0, 128 + signal.SIGINT, -signal.SIGINT)


def test_health_and_readiness(api: Any) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    dialect = "sqlite" if api.settings.resolved_database_url().startswith("sqlite") else "postgresql"
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["database"] == dialect
    # Issue 15: readiness also reports the queue and the data dir's disk (tests/server/test_readiness.py).
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "queue": "ok",
        "disk": "ok",
    }


def test_readiness_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/none", data_dir=tmp_path, run_worker=False
    )
    with TestClient(create_app(settings, run_worker=False)) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable" and r.headers["Retry-After"]


# The Engage paths of spec Part B and their v3 twins (A1), with the methods promoflow serves.
ENGAGE_PATHS = {
    "/api/v2/contacts": {"post"},
    "/api/v2/contacts/count": {"get"},
    "/api/v2/contacts/id": {"get"},
    "/api/v2/contacts/{contact_id}": {"get", "post"},
    "/api/v2/contacts/{contact_id}/promotions": {"get"},
    "/api/v2/contacts/{contact_id}/promotions/{promotion_id}/assign": {"post"},
    "/api/v2/contacts/{contact_id}/promotions/{promotion_id}/redeem": {"post"},
    "/api/v2/promotions/codes/{promotion_id}/redeem": {"post"},
    "/api/v2/promotions/multichannels": {"get", "post", "delete"},
    "/api/v2/promotions/multichannels/validity": {"get"},
    "/api/v2/promotions/multichannels/{promotion_id}": {"get", "put", "delete"},
    "/api/v2/promotions/multichannels/{promotion_id}/validity": {"get", "put"},
    "/api/v3/promotion-assignments": {"get", "post"},
    "/api/v3/promotion-assignments/{assignment_id}/redeem": {"post"},
    "/api/v3/contacts": {"post"},
    "/api/v3/contacts/{contact_id}": {"get", "patch"},
    "/api/v3/contacts/id": {"get"},
    "/api/v2/receipts": {"post"},
    "/api/v3/receipts": {"post"},
}
EXTENSIONS = {
    ("/api/v2/promotions/multichannels/{promotion_id}/activate", "post"),
    ("/api/v2/promotions/multichannels/{promotion_id}/deactivate", "post"),
    ("/api/v2/promotions/multichannels/{promotion_id}/bulk-assignments", "post"),
    ("/api/v2/jobs/{job_id}", "get"),
    ("/api/v2/promotions/codes/{promotion_id}/reactivate", "post"),
    ("/api/v3/promotion-assignments/{assignment_id}/reactivate", "post"),
}


def test_openapi_documents_every_a1_path_and_marks_extensions(api: Any) -> None:
    doc = api.client.get("/openapi.json").json()
    paths = doc["paths"]
    served = {p: set(ops) & {"get", "post", "put", "patch", "delete"} for p, ops in paths.items()}
    for path, methods in ENGAGE_PATHS.items():
        assert path in served, path
        assert methods <= served[path], (path, served[path])
        for method in methods:
            op = paths[path][method]
            assert not op.get("x-promoflow-extension"), (path, method)
    for path, method in EXTENSIONS:
        assert paths[path][method].get("x-promoflow-extension") is True, (path, method)
    # Every operation documents its errors with the A3 body.
    for path, ops in paths.items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            errors = {code for code in op.get("responses", {}) if code.startswith(("4", "5"))}
            assert "401" in errors, (path, method)
    assert "ErrorBody" in doc["components"]["schemas"]
