"""The log format of the server processes: with JSON asked for, every line a process writes on stderr — its own
loggers', the libraries' (alembic, uvicorn, pyftpdlib), the access log, the command's `database:` line — is one
JSON object with the time, level, logger and message, the event's key=value fields as fields and a traceback as
one field. The processes are real (`promoflow serve`, `promoflow worker`); the PostgreSQL outage is real too
(the database stops accepting connections and its connections are ended)."""

from __future__ import annotations

import ftplib
import io
import json
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from promoflow.server.config import Settings
from promoflow.server.migrate import upgrade
from promoflow.wire.xml import REDEMPTION_IMPORT_DIR, write_redemptions
from tests.conftest import PG_ADMIN_URL, make_tenant
from tests.support.servers import start_server

from .transfer.test_processes import Proc, wait_for

# What a process prints on stdout for scripts that wait for it (not log lines).
START_LINES = re.compile(r"^promoflow (api|ftp) listening on |^promoflow worker \S+ running$")


def json_lines(output: list[str]) -> list[dict[str, Any]]:
    """Every line of a process's output but its start lines, each parsed as one JSON object with the core keys."""
    records = []
    for line in "".join(output).splitlines():
        if not line.strip() or START_LINES.search(line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert {"ts", "level", "logger"} <= set(record) and ("message" in record or "event" in record), line
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record["ts"]), line
        records.append(record)
    return records


def test_json_access_log_makes_every_line_of_the_process_json(own_db: str, tmp_path: Path) -> None:
    """The operator's setting: only PROMOFLOW_ACCESS_LOG_FORMAT=json. The application's lines follow it."""
    data_dir = tmp_path / "data"
    tenant = make_tenant(Settings(database_url=own_db, data_dir=data_dir))
    env = {"PROMOFLOW_ACCESS_LOG_FORMAT": "json", "PROMOFLOW_EXPORT_INTERVAL_SECONDS": "0",
           "PROMOFLOW_WORKER_POLL_SECONDS": "0.05"}  # fmt: skip
    server = start_server(own_db, data_dir, env=env)
    try:
        with httpx.Client(base_url=server.base_url, headers={"apikey": tenant["apiKey"]}, timeout=60) as api:
            assert api.get("/api/v2/contacts/count").status_code == 200
            assert server.ftp_url is not None
            host, port = server.ftp_url.removeprefix("ftp://").rsplit(":", 1)
            with ftplib.FTP() as ftp:
                ftp.connect(host, int(port), timeout=60)
                ftp.login(tenant["ftpUser"], tenant["ftpPassword"])
                name = "20260310120000_1 redemptions=x.xml"  # a space and an '=' in a field's value
                with pytest.raises(ftplib.error_perm):  # refused by name: logged with the name as a field
                    ftp.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/{name}", io.BytesIO(b"<x/>"))
                good = "20260310120000_1_redemptions.xml"
                reply = ftp.storbinary(
                    f"STOR {REDEMPTION_IMPORT_DIR}/{good}", io.BytesIO(write_redemptions([]))
                )
                assert reply.startswith("226"), reply
            wait_for(lambda: any("job.succeeded" in line for line in server.output), what="the import job")
    finally:
        assert server.stop() in (0, -signal.SIGTERM)

    records = json_lines(server.output)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_event.setdefault(r.get("event", ""), []).append(r)
    loggers = {r["logger"] for r in records}
    assert {
        "promoflow.cli",
        "promoflow.serve",
        "promoflow.access",
        "promoflow.transfer",
        "promoflow.worker",
    } <= loggers

    [access] = [r for r in by_event["http.request"] if r["path"] == "/api/v2/contacts/count"]
    assert access["level"] == "INFO" and access["logger"] == "promoflow.access" and access["status"] == 200
    [received] = by_event["transfer.file_received"]
    assert received["tenant"] == tenant["tenantId"] and received["file"] == good
    assert isinstance(received["bytes"], int) and received["bytes"] > 0 and received["status"] == "queued"
    assert received["message"].startswith("transfer.file_received tenant=")
    [refused] = by_event["transfer.name_refused"]
    assert refused["file"] == name and refused["tenant"] == tenant["tenantId"]
    [started] = by_event["transfer.ftp_started"]
    assert started["address"] == f"{host}:{port}" and started["tls"] is False
    assert by_event["cli.database"][0]["database"].split(" ", 1)[0] in ("SQLite", "PostgreSQL")


@pytest.mark.postgres
def test_a_worker_logs_a_database_outage_as_json_with_the_traceback_in_one_field(pg_url: str) -> None:
    """PROMOFLOW_LOG_FORMAT=json on `promoflow worker`; its database stops taking connections and comes back:
    worker.loop_error carries the traceback as one field, worker.loop_recovered its count as a number."""
    name = f"promoflow_log_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    upgrade(url)

    def accepting(on: bool) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if on else "false"}')
            if not on:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    worker = Proc(
        ["worker"],
        {"PROMOFLOW_DATABASE_URL": url, "PROMOFLOW_LOG_FORMAT": "json", "PROMOFLOW_LOG_LEVEL": "info",
         "PROMOFLOW_WORKER_POLL_SECONDS": "0.05"},
        r"promoflow worker \S+ running",
    )  # fmt: skip
    try:
        accepting(False)
        wait_for(lambda: any("worker.loop_error" in line for line in worker.output), what="the outage logged")
        accepting(True)
        wait_for(lambda: any("worker.loop_recovered" in line for line in worker.output), what="the recovery")
    finally:
        worker.kill(signal.SIGTERM)
        accepting(True)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    records = json_lines(worker.output)
    errors = [r for r in records if r.get("event") == "worker.loop_error"]
    first = errors[0]
    assert first["level"] == "ERROR" and first["logger"] == "promoflow.worker"
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert "OperationalError" in first["exception"] and "\n" in first["exception"]
    [recovered] = [r for r in records if r.get("event") == "worker.loop_recovered"]
    assert recovered["after"] >= len(errors), (recovered, len(errors))
    assert isinstance(recovered["after"], int)
