"""Operators (issue 11 §7): every command names the database it opens and never creates one by accident; what
goes wrong around a command is one line naming what to do, never a traceback; `--version`; `db upgrade` says
what it applied; `tenant show` / `tenant set` (validated, effective on a running server within the key-cache
time); `api --workers N` says when it is ready; the SDK-only install hides and explains the server commands."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from promoflow import __version__
from promoflow.server.migrate import migrations, upgrade
from tests.conftest import PG_ADMIN_URL
from tests.support.children import tied
from tests.support.servers import ServerProcess, start_server

from ._support import assert_error


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMOFLOW_")}
    return {**env, **extra}


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `promoflow` command in a subprocess, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "promoflow.cli", *args],
        capture_output=True, text=True, env=env or _clean_env(), cwd=cwd, timeout=180,
    )  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """The same command line in this process (faster: no interpreter start)."""
    from promoflow.cli.main import app

    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMOFLOW_")}
    return CliRunner().invoke(app, list(args), env={**unset, **(env or {})}, catch_exceptions=False)


def one_line_error(stderr: str) -> str:
    """The command's error: exactly one `error:` line, and no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test alone, never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'own.sqlite3'}"
        return
    name = f"promoflow_ops_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------- which database, and none by accident


def test_tenant_commands_in_a_directory_without_a_database_refuse_and_create_nothing(tmp_path: Path) -> None:
    """The new operator's mistake: `tenant create` from another directory must not start a second SQLite file."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    expected = elsewhere / "promoflow-data" / "promoflow.sqlite3"
    for args in (("tenant", "create", "acme", "--json"), ("tenant", "list"), ("tenant", "show", "acme"),
                 ("tenant", "set", "acme", "reactivationLimit=2"), ("tenant", "rotate-key", "acme"),
                 ("export", "promotions")):  # fmt: skip
        done = run(*args, cwd=elsewhere)
        assert done.returncode == 1, (args, done.stderr)
        assert f"database: SQLite {expected}" in done.stderr
        line = one_line_error(done.stderr)
        assert line == (
            f"error: no promoflow database at {expected}; run `promoflow db upgrade` or pass --data-dir "
            "(or --database-url)"
        )
        if "--json" in args:
            assert json.loads(done.stdout) == {
                "errorCode": "DatabaseMissing",
                "message": line[len("error: ") :],
            }
    assert list(elsewhere.iterdir()) == []  # no data dir, no empty database file


def test_every_command_names_its_database_never_its_password(own_db: str, tmp_path: Path) -> None:
    url = own_db
    if url.startswith("postgresql"):
        # The same server and database, with a password in the URL (trust auth ignores it).
        url = url.replace("postgres@", "postgres:s3cret-pw@")
    where = ("--database-url", url, "--data-dir", str(tmp_path / "data"))
    expected = (
        f"database: SQLite {tmp_path / 'own.sqlite3'}"
        if url.startswith("sqlite")
        else f"database: PostgreSQL 127.0.0.1:5432/{url.rsplit('/', 1)[1]} (user postgres)"
    )
    for args in (("db", "upgrade"), ("db", "check"), ("tenant", "create", "acme"), ("tenant", "list"),
                 ("tenant", "show", "acme"), ("tenant", "set", "acme", "reactivationLimit=5"),
                 ("tenant", "rotate-key", "acme"), ("tenant", "rotate-ftp-password", "acme"),
                 ("export", "promotions")):  # fmt: skip
        done = cli(*args, *where)
        assert done.exit_code == 0, (args, done.stderr)
        assert done.stderr.splitlines()[0] == expected, args
        assert "s3cret-pw" not in done.stderr + done.stdout
    # export promotions: a readable line per tenant, not a dict.
    assert cli("export", "promotions", *where).stdout == "acme: nothing new since the last export\n"


def test_db_upgrade_says_which_migrations_it_applied(own_db: str, tmp_path: Path) -> None:
    where = ("--database-url", own_db, "--data-dir", str(tmp_path))
    known = migrations(own_db)
    upgrade(own_db, known[2].revision)
    done = cli("db", "upgrade", *where)
    assert done.exit_code == 0, done.stderr
    applied = [line for line in done.stderr.splitlines() if line.startswith("applied migration")]
    assert applied == [f"applied migration {m.revision} ({m.title})" for m in known[3:]]
    assert (
        f"database is up to date (revision {known[-1].revision}): {len(known) - 3} migrations applied"
        in done.stderr
    )
    again = cli("db", "upgrade", *where)
    assert "applied migration" not in again.stderr
    assert f"database is up to date (revision {known[-1].revision}): nothing to apply" in again.stderr


def test_commands_that_use_data_refuse_a_schema_that_is_behind(own_db: str, tmp_path: Path) -> None:
    known = migrations(own_db)
    upgrade(own_db, known[-2].revision)
    where = ("--database-url", own_db, "--data-dir", str(tmp_path))
    for args in (("tenant", "create", "acme"), ("tenant", "list"), ("export", "promotions"), ("db", "check")):
        done = cli(*args, *where)
        assert done.exit_code == 1, args
        line = one_line_error(done.stderr)
        assert f"is at schema revision {known[-2].revision}" in line and "run `promoflow db upgrade`" in line
    assert cli("db", "upgrade", *where).exit_code == 0
    assert cli("tenant", "create", "acme", *where).exit_code == 0


# ------------------------------------------------------------------------------------ one line, not a traceback


@pytest.mark.postgres
def test_an_unreachable_or_missing_postgresql_is_one_line(tmp_path: Path) -> None:
    refused = run("tenant", "list", "--database-url", "postgresql://postgres:pw@127.0.0.1:1/promoflow")
    assert refused.returncode == 1
    line = one_line_error(refused.stderr)
    assert line.startswith("error: cannot reach PostgreSQL 127.0.0.1:1/promoflow (user postgres):")
    assert "Connection refused" in line and "check --database-url or PROMOFLOW_DATABASE_URL" in line
    assert "pw" not in refused.stderr.replace("PostgreSQL", "")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    missing = run("serve", "--no-ftp", "--port", "0", "--database-url", f"{base}/no_such_db_{uuid.uuid4().hex[:6]}",
                  "--data-dir", str(tmp_path))  # fmt: skip
    assert missing.returncode == 1
    line = one_line_error(missing.stderr)
    assert "does not exist" in line and "createdb" in line


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.sqlite3"
    not_a_db.write_text("this is not a database " * 100)
    done = run("tenant", "list", "--database-url", f"sqlite:///{not_a_db}")
    assert done.returncode == 1
    assert "not a database" in one_line_error(done.stderr)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://root@localhost/promoflow", "unsupported database URL scheme 'mysql'"),
        ("oracle+cx_oracle://u@h/db", "unsupported database URL scheme 'oracle+cx_oracle'"),
        ("not a url", "the database URL is not a URL"),
    ],
)
def test_an_unsupported_database_url_is_one_line(url: str, says: str, tmp_path: Path) -> None:
    for how in ("flag", "environment"):
        if how == "flag":
            done = cli("tenant", "list", "--database-url", url)
        else:
            done = cli("db", "upgrade", "--data-dir", str(tmp_path), env={"PROMOFLOW_DATABASE_URL": url})
        assert done.exit_code == 2, done.stderr
        line = one_line_error(done.stderr)
        assert says in line and ("sqlite:///" in line and "postgresql://" in line)


def test_an_invalid_setting_in_the_environment_is_one_line(tmp_path: Path) -> None:
    done = run("db", "upgrade", "--data-dir", str(tmp_path), env=_clean_env(PROMOFLOW_DB_POOL_SIZE="many"))
    assert done.returncode == 2
    assert "PROMOFLOW_DB_POOL_SIZE" in one_line_error(done.stderr)


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_busy_ports_are_one_line_naming_the_option(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    where = ("--database-url", db, "--data-dir", str(tmp_path / "data"))
    with _busy_port() as busy:
        port = str(busy.getsockname()[1])
        ftp_busy = run("serve", "--port", "0", "--ftp-port", port, *where)
        assert ftp_busy.returncode == 1
        assert one_line_error(ftp_busy.stderr) == (
            f"error: FTP port {port} on 127.0.0.1 is in use (another promoflow or FTP server?); pass --ftp-port N "
            "or set PROMOFLOW_FTP_PORT (0 picks a free one), or --no-ftp"
        )
        api_busy = run("serve", "--port", port, "--no-ftp", *where)
        assert api_busy.returncode == 1
        assert one_line_error(api_busy.stderr) == (
            f"error: API port {port} on 127.0.0.1 is in use (another promoflow?); pass --port N (0 picks a free "
            "one) or set PROMOFLOW_PORT"
        )
        ftp_only = run("ftp", "--port", port, *where)
        assert ftp_only.returncode == 1
        assert one_line_error(ftp_only.stderr) == (
            f"error: FTP port {port} on 127.0.0.1 is in use (another promoflow or FTP server?); pass --port N or "
            "set PROMOFLOW_FTP_PORT (0 picks a free one)"
        )


def test_a_busy_worker_metrics_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    with _busy_port() as busy:
        port = str(busy.getsockname()[1])
        env = _clean_env(PROMOFLOW_WORKER_METRICS_PORT=port)
        worker = run("worker", "--database-url", db, "--data-dir", str(tmp_path / "data"), env=env)
        assert worker.returncode == 1
        assert one_line_error(worker.stderr) == (
            f"error: worker metrics port {port} on 127.0.0.1 is in use (another promoflow worker?); set "
            "PROMOFLOW_WORKER_METRICS_PORT to a free port (0 picks one), or unset it for no metrics server"
        )
        assert "promoflow worker" not in worker.stdout  # stopped before it ran
    # An address the host does not have names the address setting.
    env = _clean_env(PROMOFLOW_WORKER_METRICS_PORT="0", PROMOFLOW_WORKER_METRICS_HOST="192.0.2.1")
    worker = run("worker", "--database-url", db, "--data-dir", str(tmp_path / "data"), env=env)
    assert worker.returncode == 1
    line = one_line_error(worker.stderr)
    assert line.startswith("error: cannot serve the worker's metrics on 192.0.2.1:0: ") and (
        "PROMOFLOW_WORKER_METRICS_HOST" in line
    ), line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://user@host:notaport", "Port could not be cast to integer value"),
        ("localhost:2121", "an FTP URL starts with ftp:// or ftps://"),
        ("ftp://:2121", "the FTP URL names no host"),
        ("ftp://example.com", "the FTP URL names no user"),
    ],
)
def test_a_malformed_ftp_url_is_a_usage_error(url: str, says: str, tmp_path: Path) -> None:
    done = run("outbox", "sync", "--outbox-dir", str(tmp_path / "outbox"), "--ftp-url", url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    flat = " ".join(done.stderr.replace("│", " ").split())
    assert "Invalid value for '--ftp-url'" in flat and says in flat


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"promoflow {__version__}"


_SDK_ONLY = """
import importlib.abc, sys
SERVER = {"fastapi", "sqlalchemy", "alembic", "uvicorn", "pydantic_settings", "starlette", "psycopg",
          "aiosqlite", "pyftpdlib"}
class NoServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoServer())
sys.argv = ["promoflow", *sys.argv[1:]]
from promoflow.cli.main import main
main()
"""


def _commands(help_text: str) -> set[str]:
    return set(re.findall(r"^[│|]?\s+([a-z][a-z-]+)\s{2,}\S", help_text, re.M))


def test_the_sdk_only_install_hides_the_server_commands_and_says_how_to_get_them(tmp_path: Path) -> None:
    """With the server packages unimportable (as after `pip install promoflow`): `--help` lists only what can
    run, and a server command says how to install the server, in one line."""

    def sdk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _SDK_ONLY, *args], capture_output=True, text=True,
                              env=_clean_env(COLUMNS="100"), cwd=tmp_path, timeout=120)  # fmt: skip

    full = run("--help", env=_clean_env(COLUMNS="100"))
    assert {"serve", "api", "worker", "ftp", "db", "tenant", "export", "outbox", "demo"} <= _commands(
        full.stdout
    )
    helped = sdk("--help")
    assert helped.returncode == 0, helped.stderr
    assert _commands(helped.stdout) == {"outbox", "demo"}
    for args in (("serve",), ("api", "--workers", "2"), ("worker",), ("ftp",), ("db", "upgrade"),
                 ("tenant", "list"), ("tenant", "create", "acme", "--json"), ("export", "promotions"),
                 ("user", "list")):  # fmt: skip
        done = sdk(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert one_line_error(done.stderr) == (
            'error: the promoflow server is not installed here: pip install "promoflow[server]"'
        )
    assert list(tmp_path.iterdir()) == []
    # The SDK's own commands run: `outbox status` answers about the outbox (here: there is none), not about the
    # missing server.
    status = sdk("outbox", "status", "--json", "--outbox-dir", str(tmp_path / "outbox"))
    assert status.returncode == 2, status.stderr
    assert "no outbox at" in status.stderr and "server" not in status.stderr


# ----------------------------------------------------------------------------------------- tenants: rules, show, set


def test_tenant_names_and_currencies_are_validated(sqlite_url: str, tmp_path: Path) -> None:
    where = ("--database-url", sqlite_url, "--data-dir", str(tmp_path))
    for bad in ("Acme", "acme corp", "-acme", "acme/..", "a" * 65, "anonymous", "ftp", "åre", "acme:1"):
        done = cli("tenant", "create", "--json", *where, "--", bad)
        assert done.exit_code == 2, bad
        assert json.loads(done.stdout)["errorCode"] == "InvalidTenantName", bad
    for bad in ("XYZ", "SE", "sekk", "XAU", "123"):
        done = cli("tenant", "create", f"c-{uuid.uuid4().hex[:8]}", "--currency", bad, "--json", *where)
        assert done.exit_code == 2 and json.loads(done.stdout)["errorCode"] == "InvalidCurrency", bad
    name = f"ok.{uuid.uuid4().hex[:6]}_x-1"
    done = cli("tenant", "create", name, "--currency", "eur", "--json", *where)
    assert done.exit_code == 0, done.stderr
    shown = json.loads(cli("tenant", "show", name, "--json", *where).stdout)
    assert shown["currency"] == "EUR" and shown["ftpUser"] == name


def test_tenant_set_validates_applies_all_or_nothing_and_resets(sqlite_url: str, tmp_path: Path) -> None:
    where = ("--database-url", sqlite_url, "--data-dir", str(tmp_path))
    name = f"s-{uuid.uuid4().hex[:8]}"
    assert cli("tenant", "create", name, *where).exit_code == 0
    before = json.loads(cli("tenant", "show", name, "--json", *where).stdout)
    assert (
        before["effective"]["rateLimitPerSecond"] == 200.0
        and before["effective"]["processedFileRetentionDays"] == 30
    )

    refusals = {
        "rateLimitPerSecond=fast": "InvalidSetting",
        "rateLimitPerSecond=-1": "InvalidSetting",
        "rateLimitBurst=0": "InvalidSetting",
        "reactivationLimit=1.5": "InvalidSetting",
        "timeZone=Mars/Olympus": "InvalidTimeZone",
        "currency=ABC": "InvalidCurrency",
        "customKey=firstName": "InvalidSetting",
        "contactKeys.Member=favouriteColour": "InvalidSetting",
        "contactKeys.Robot=email": "UnknownSetting",
        "ipAllowList=10.0.0.300": "InvalidIpAllowList",
        "processedFileRetentionDays=-3": "InvalidSetting",
        "colour=blue": "UnknownSetting",
        "reactivationLimit": "InvalidSetting",
        "timeZone=": "InvalidSetting",
    }
    for assignment, code in refusals.items():
        # A valid change next to the invalid one: nothing of the command is stored.
        done = cli("tenant", "set", name, "reactivationLimit=9", assignment, "--json", *where)
        assert done.exit_code == 2, assignment
        assert json.loads(done.stdout)["errorCode"] == code, assignment
        assert code in one_line_error(done.stderr)
    assert json.loads(cli("tenant", "show", name, "--json", *where).stdout)["settings"] == before["settings"]

    done = cli("tenant", "set", name, "ratelimitpersecond=12.5", "rateLimitBurst=30", "timeZone=America/New_York",
               "currency=usd", "reactivationLimit=0", "customKey=externalId", "contactKeys.Member=mobilePhone",
               "ipAllowList=10.0.0.0/8, 192.168.1.7", "processedFileRetentionDays=0", "--json", *where)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    after = json.loads(done.stdout)
    assert (after["timeZone"], after["currency"]) == ("America/New_York", "USD")
    assert after["settings"] == {
        **before["settings"],
        "rateLimitPerSecond": 12.5, "rateLimitBurst": 30, "reactivationLimit": 0, "customKey": "externalId",
        "contactKeys": {"Member": "mobilePhone", "Contact": "email"},
        "ipAllowList": ["10.0.0.0/8", "192.168.1.7/32"], "processedFileRetentionDays": 0,
    }  # fmt: skip
    text = cli("tenant", "show", name, *where)
    assert "rateLimitPerSecond" in text.stdout and "12.5" in text.stdout and "mobilePhone" in text.stdout

    reset = cli("tenant", "set", name, "rateLimitPerSecond=", "rateLimitBurst=", "ipAllowList=",
                "processedFileRetentionDays=", "reactivationLimit=", "customKey=", "contactKeys.Member=",
                "--json", *where)  # fmt: skip
    assert reset.exit_code == 0, reset.stderr
    assert json.loads(reset.stdout)["settings"] == before["settings"]
    missing = cli("tenant", "set", "nobody", "reactivationLimit=1", *where)
    assert missing.exit_code == 2 and "TenantNotFound" in one_line_error(missing.stderr)


def test_a_contact_key_attribute_changes_only_while_the_tenant_has_no_such_contacts(api: Any) -> None:
    where = ("--database-url", api.settings.resolved_database_url(), "--data-dir", str(api.settings.data_dir))
    name = api.tenant["name"]
    assert api.post("/api/v2/contacts", json={"email": "ada@example.com"}).status_code == 201
    done = cli("tenant", "set", name, "contactKeys.Member=mobilePhone", *where)
    assert done.exit_code == 2
    assert "already has 1 Member contacts keyed by 'email'" in one_line_error(done.stderr)
    # Contact-type contacts: none yet, so their key may change.
    assert cli("tenant", "set", name, "contactKeys.Contact=externalId", *where).exit_code == 0


def test_tenant_settings_reach_a_running_server_within_the_key_cache_time(tmp_path: Path) -> None:
    """`tenant set` against a real `promoflow serve` process (API keys trusted 0.3 s): the rate limit, the IP
    allow-list and their reset take effect without a restart. The server's access log names the tenant."""
    db = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    data = tmp_path / "data"
    where = ("--database-url", db, "--data-dir", str(data))
    assert cli("db", "upgrade", *where).exit_code == 0
    name = f"live-{uuid.uuid4().hex[:6]}"
    key = json.loads(cli("tenant", "create", name, "--json", *where).stdout)["apiKey"]
    server = start_server(db, data, "--no-ftp", env={"PROMOFLOW_API_KEY_CACHE_SECONDS": "0.3"})
    try:
        with httpx.Client(base_url=server.base_url, headers={"apikey": key}, timeout=30) as http:

            def until(status: int, deadline: float = 15) -> httpx.Response:
                end = time.monotonic() + deadline
                while True:
                    r = http.get("/api/v2/contacts/count")
                    if r.status_code == status or time.monotonic() > end:
                        return r
                    time.sleep(0.05)  # polling a server for a state it reaches on its own

            assert http.get("/api/v2/contacts/count").status_code == 200
            assert (
                cli("tenant", "set", name, "rateLimitPerSecond=0.01", "rateLimitBurst=1", *where).exit_code
                == 0
            )
            limited = until(429)
            assert_error(limited, 429, "TooManyRequests")
            assert cli("tenant", "set", name, "rateLimitPerSecond=", "rateLimitBurst=", "ipAllowList=10.9.8.7",
                       *where).exit_code == 0  # fmt: skip
            assert_error(until(403), 403, "IpNotAllowed")
            assert cli("tenant", "set", name, "ipAllowList=127.0.0.0/8", *where).exit_code == 0
            assert until(200).json() == 0
    finally:
        server.stop()
    output = "".join(server.output)
    assert re.search(
        rf"promoflow\.access GET /api/v2/contacts/count 200 \d+\.\dms tenant={re.escape(name)}", output
    )
    assert "GET /api/v2/contacts/count 429" in output and "GET /api/v2/contacts/count 403" in output
    assert "Traceback" not in output


# ---------------------------------------------------------------------------------------------- api --workers N


def _start(
    cmd: list[str], pattern: str, env: dict[str, str], timeout: float = 120
) -> tuple[ServerProcess, str]:
    proc = subprocess.Popen(tied(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    output: list[str] = []
    found = threading.Event()
    match: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = re.search(pattern, line)
            if m and not found.is_set():
                match.append(m.group(1))
                found.set()
        found.set()

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    if not found.wait(timeout) or not match:
        ServerProcess(proc, "", output, drainer).kill()
        raise AssertionError("did not start:\n" + "".join(output))
    return ServerProcess(proc, match[0], output, drainer), match[0]


@pytest.mark.postgres
def test_api_with_several_processes_says_when_they_are_ready_and_where(pg_url: str, tmp_path: Path) -> None:
    """The session's PostgreSQL database (migrated); two API processes share one socket."""
    where = ("--database-url", pg_url, "--data-dir", str(tmp_path))
    key = json.loads(cli("tenant", "create", f"w-{uuid.uuid4().hex[:8]}", "--json", *where).stdout)["apiKey"]
    cmd = [sys.executable, "-m", "promoflow.cli", "api", "--workers", "2", "--port", "0", *where]
    server, url = _start(cmd, r"promoflow api listening on (http://\S+) \(2 processes ready\)",
                         _clean_env(PYTHONUNBUFFERED="1"))  # fmt: skip
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/readyz").json()["status"] == "ready"
            counts = {
                http.get("/api/v2/contacts/count", headers={"apikey": key}).status_code for _ in range(20)
            }
            assert counts == {200}
    finally:
        code = server.stop(signal.SIGTERM)
    output = "".join(server.output)
    assert "promoflow api starting 2 processes on " + url in output
    assert output.index("starting 2 processes") < output.index("(2 processes ready)")
    assert "Traceback" not in output
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_api_with_several_processes_on_sqlite_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run("api", "--workers", "2", "--port", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert one_line_error(done.stderr) == (
        "error: several API processes need PostgreSQL (SQLite has one writer); use --workers 1"
    )


def test_export_promotions_prints_a_readable_summary(api: Any) -> None:
    from ._support import assign, new_contact, new_promotion

    assign(api, new_contact(api)["id"], new_promotion(api)["id"])
    where = ("--database-url", api.settings.resolved_database_url(), "--data-dir", str(api.settings.data_dir))
    done = cli("export", "promotions", "--tenant", api.tenant["name"], *where)
    assert done.exit_code == 0, done.stderr
    assert re.fullmatch(
        rf"{re.escape(api.tenant['name'])}: wrote /integration/promotionExport/\S+\.xml "
        r"\(1 assigned, 0 redeemed, 0 deleted\)\n",
        done.stdout,
    ), done.stdout
    again = cli("export", "promotions", "--tenant", api.tenant["name"], *where)
    assert again.stdout == f"{api.tenant['name']}: nothing new since the last export\n"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROMOFLOW_PORT", "70000"),
        ("PROMOFLOW_FTP_PORT", "99999"),
        ("PROMOFLOW_MAX_BODY_BYTES", "-1"),
        ("PROMOFLOW_WORKER_POLL_SECONDS", "0"),
        ("PROMOFLOW_FTP_PASSIVE_PORTS", "60010-60000"),
        ("PROMOFLOW_FTP_PASSIVE_PORTS", "garbage"),
        ("PROMOFLOW_LOG_LEVEL", "verbose"),
        ("PROMOFLOW_DB_POOL_SIZE", "0"),
        ("PROMOFLOW_IMPORT_BATCH_SIZE", "-5"),
        ("PROMOFLOW_READY_MIN_FREE_DISK_MB", "-1"),
    ],
)
def test_a_setting_out_of_its_range_is_refused_at_start_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    """A value that would make the server misbehave (a port that wraps around, every POST refused, an idle loop
    spinning at 100 % CPU, a silently ignored range) stops it before it starts, exit 2, naming the setting."""
    done = run("db", "upgrade", "--data-dir", str(tmp_path), env=_clean_env(**{variable: value}))
    assert done.returncode == 2, done.stderr
    assert variable in one_line_error(done.stderr)
