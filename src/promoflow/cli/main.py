"""`promoflow`: a thin CLI over the same services the API uses.

Server commands import the server lazily, so an integrator who installed only `promoflow` (no `[server]` extra)
can still run the outbox commands; there the server commands are hidden from `--help` and, if run, say how to
install the server. Every server command names the database it opens on stderr, and what goes wrong around it
(a missing or unreachable database, a busy port, a bad setting) is one line, not a traceback (`_operator`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from .. import __version__
from ._operator import INSTALL_SERVER, SERVER_PACKAGES, fail, operator_command, server_installed, settings_for

SERVER = server_installed()

app = typer.Typer(
    help="promoflow: Engage-compatible promotions server and integrator tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants, their settings, API keys and FTP passwords.", no_args_is_help=True)
export_app = typer.Typer(help="Files the server writes for integrators.", no_args_is_help=True)
app.add_typer(db_app, name="db", hidden=not SERVER)
app.add_typer(tenant_app, name="tenant", hidden=not SERVER)
app.add_typer(export_app, name="export", hidden=not SERVER)
outbox_app = typer.Typer(
    help="Integrator side: the SDK's outbox of changes on their way to the server.", no_args_is_help=True
)
demo_app = typer.Typer(help="Demonstrations against a running server.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
app.add_typer(demo_app, name="demo")

console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"promoflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """promoflow: Engage-compatible promotions server and integrator tools."""


DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="PROMOFLOW_DATA_DIR", help="Data directory (SQLite, FTP tree)."),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="PROMOFLOW_DATABASE_URL", help="Database URL; default SQLite in data dir."
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for scripts.")]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_db(settings: Any, fn: Any) -> Any:
    from ..server.db import Database

    db = Database(settings.resolved_database_url(), pool_size=2)
    try:
        async with db.write() as conn:
            return await fn(conn)
    finally:
        await db.dispose()


def _fail(exc: Exception) -> None:
    """Kept for commands written before `operator_command` (prefer decorating the command): one line for what an
    operator can act on, the exception itself otherwise."""
    from ._operator import explain

    explained = explain(exc)
    if explained is None:
        raise exc
    fail(explained[0], explained[1])


def _ready_settings(data_dir: Path | None, database_url: str | None) -> Any:
    """Settings for a command that uses the data but never changes the schema: the database must exist and be
    at this promoflow's schema (nothing is created, nothing migrated)."""
    from ..server.migrate import require_current

    settings = settings_for(data_dir, database_url)
    require_current(settings.resolved_database_url())
    return settings


# ---------------------------------------------------------------------------------------------- database


@db_app.command("upgrade")
@operator_command
def db_upgrade(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Apply the schema migrations the database lacks, and say which."""
    from ..server.migrate import current_revisions, upgrade

    settings = settings_for(data_dir, database_url, create_dir=True)
    url = settings.resolved_database_url()
    applied = upgrade(url)
    for m in applied:
        typer.echo(f"applied migration {m}", err=True)
    at = ", ".join(current_revisions(url))
    if applied:
        typer.echo(f"database is up to date (revision {at}): {len(applied)} migrations applied", err=True)
    else:
        typer.echo(f"database is up to date (revision {at}): nothing to apply", err=True)


@db_app.command("check")
@operator_command
def db_check(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Exit non-zero when the database is behind the code or differs from the models."""
    from ..server.migrate import SchemaError, drift, require_current

    url = settings_for(data_dir, database_url).resolved_database_url()
    try:
        require_current(url)
    except SchemaError as exc:
        fail(str(exc))
    diff = drift(url)
    if diff:
        fail(f"models and database differ: {diff}")
    typer.echo("database matches the models", err=True)


# ----------------------------------------------------------------------------------------------- tenants


@tenant_app.command("create")
@operator_command
def tenant_create(
    name: Annotated[
        str, typer.Argument(help="Lowercase letters, digits, '.', '_', '-' (also the FTP user name).")
    ],
    time_zone: Annotated[
        str, typer.Option("--time-zone", help="IANA zone for date-only validity.")
    ] = "Europe/Stockholm",
    currency: Annotated[str, typer.Option(help="Default currency (ISO 4217) of MONEY promotions.")] = "SEK",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a tenant and print its API key (shown once). The database must exist: `promoflow db upgrade`."""
    from ..kit.clock import SystemClock
    from ..server import tenant_setup

    settings = _ready_settings(data_dir, database_url)
    from ..server.audit import Actor

    info = _run(
        tenant_setup.create_tenant(settings, SystemClock().now(), name, time_zone, currency, Actor.cli())
    )
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(f"tenant {info['name']} created ({info['tenantId']})", err=True)
    for k, v in info.items():
        if k not in ("name", "tenantId"):
            typer.echo(f"  {k}: {v}", err=True)
    typer.echo(info["apiKey"])


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


@tenant_app.command("list")
@operator_command
def tenant_list(as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """List tenants (whole ids; --json for scripts)."""
    from ..kit.clock import SystemClock
    from ..server.tenant.service import TenantService

    settings = _ready_settings(data_dir, database_url)
    rows = _run(_with_db(settings, lambda conn: TenantService(SystemClock().now()).list(conn)))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no tenants yet: promoflow tenant create NAME", err=True)
        return
    cols = ("name", "tenantId", "timeZone", "currency", "activeKeys", "createdOn")
    for line in _columns([list(cols), *([str(r[c]) for c in cols] for r in rows)]):
        typer.echo(line)


def _show_text(info: dict[str, Any]) -> None:
    typer.echo(f"tenant {info['name']}  {info['tenantId']}")
    stored = info["settings"]
    effective = info.get("effective", {})
    lines = [["timeZone", info["timeZone"]], ["currency", info["currency"]]]
    for name in ("rateLimitPerSecond", "rateLimitBurst", "processedFileRetentionDays", "ipAllowList"):
        if name in stored:
            value = stored[name]
            lines.append([name, ", ".join(value) if isinstance(value, list) else str(value)])
        else:
            value = effective.get(name)
            shown = "any address" if name == "ipAllowList" else f"{value} (server default)"
            lines.append([name, shown])
    for contact_type, attribute in stored.get("contactKeys", {}).items():
        lines.append([f"contactKeys.{contact_type}", attribute])
    for name, value in sorted(stored.items()):
        if name not in ("contactKeys", "rateLimitPerSecond", "rateLimitBurst", "processedFileRetentionDays",
                        "ipAllowList"):  # fmt: skip
            lines.append([name, json.dumps(value) if not isinstance(value, str) else value])
    lines.append(["ftpUser", info["ftpUser"]])
    lines.append(["createdOn", info["createdOn"] or ""])
    for line in _columns(lines):
        typer.echo("  " + line)
    typer.echo("API keys")
    keys = [[k["prefix"] + "…", k["name"], k["scope"], f"created {k['createdOn']}",
             f"revoked {k['revokedOn']}" if k["revokedOn"] else "active",
             f"allow {', '.join(k['ipAllowList'])}" if k["ipAllowList"] else ""] for k in info["apiKeys"]]  # fmt: skip
    for line in _columns(keys) if keys else ["(none)"]:
        typer.echo("  " + line)


async def _show(settings: Any, name: str) -> dict[str, Any]:
    from ..kit.clock import SystemClock
    from ..server.tenant.service import TenantService

    shown: dict[str, Any] = await _with_db(
        settings, lambda conn: TenantService(SystemClock().now()).show(conn, name, settings)
    )
    return shown


@tenant_app.command("show")
@operator_command
def tenant_show(
    name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """A tenant's settings (stored, and the server defaults that apply) and its API keys (prefixes only)."""
    settings = _ready_settings(data_dir, database_url)
    info = _run(_show(settings, name))
    if as_json:
        typer.echo(json.dumps(info))
    else:
        _show_text(info)


class _TenantSetCommand(TyperCommand):
    """`tenant set`: its help ends with the settings it accepts, read when the help is shown from the list the
    validation uses (`setting_names`), so the two cannot drift; the server is imported only then."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's (vendored) click types
        base = self.__dict__.setdefault("_pf_base_help", self.help or "")
        if SERVER:
            from ..server.tenant.service import setting_names

            self.help = f"{base}\n\nSettings: {', '.join(setting_names())}."
        super().format_help(ctx, formatter)


@tenant_app.command("set", cls=_TenantSetCommand)
@operator_command
def tenant_set(
    name: str,
    assignments: Annotated[
        list[str],
        typer.Argument(metavar="KEY=VALUE...", help="Settings to change; KEY= resets KEY to its default."),
    ],
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Change a tenant's settings (validated; all or nothing). Running servers apply them within
    PROMOFLOW_API_KEY_CACHE_SECONDS; `promoflow tenant show NAME` prints them (docs/operators.md, "Tenant
    settings", says what each means)."""
    from ..kit.clock import SystemClock
    from ..server.audit import Actor
    from ..server.tenant.service import TenantService, parse_setting_text

    settings = _ready_settings(data_dir, database_url)
    changes = parse_setting_text(assignments)
    service = TenantService(SystemClock().now(), Actor.cli())
    _run(_with_db(settings, lambda conn: service.update_settings(conn, name, changes)))
    info = _run(_show(settings, name))
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(
        f"tenant {name} updated: {', '.join(a.strip() for a in assignments)} (running servers apply it within "
        f"{settings.api_key_cache_seconds:g} s)",
        err=True,
    )
    _show_text(info)


@tenant_app.command("rotate-key")
@operator_command
def tenant_rotate_key(
    name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Revoke the tenant's keys and print a new one (running servers stop accepting the old key within seconds)."""
    from ..kit.clock import SystemClock
    from ..server.audit import Actor
    from ..server.tenant.service import TenantService

    settings = _ready_settings(data_dir, database_url)
    service = TenantService(SystemClock().now(), Actor.cli())
    key = _run(_with_db(settings, lambda conn: service.rotate_key(conn, name)))
    typer.echo(json.dumps({"name": name, "apiKey": key}) if as_json else key)


@tenant_app.command("rotate-ftp-password")
@operator_command
def tenant_rotate_ftp_password(
    name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Replace the tenant's FTP password and print the new one (the old one stops working within seconds)."""
    from ..kit.clock import SystemClock
    from ..server.audit import Actor
    from ..server.transfer.accounts import rotate_ftp_password

    settings = _ready_settings(data_dir, database_url)
    info = _run(
        _with_db(
            settings,
            lambda conn: rotate_ftp_password(conn, settings, name, SystemClock().now(), Actor.cli()),
        )
    )
    typer.echo(json.dumps(info) if as_json else info["ftpPassword"])


@export_app.command("promotions")
@operator_command
def export_promotions_cmd(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")
    ] = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Write the promotion export now: assignments assigned, redeemed and deleted since the last export."""
    from datetime import timedelta

    from ..kit.clock import SystemClock
    from ..server.db import Database
    from ..server.transfer.export import export_all
    from ..server.transfer.files import FileStore

    settings = _ready_settings(data_dir, database_url)

    async def run() -> Any:
        db = Database(settings.resolved_database_url(), pool_size=2)
        try:
            overlap = timedelta(seconds=settings.export_overlap_seconds)
            store = FileStore(settings.data_dir)
            return await export_all(db, store, SystemClock().now(), overlap=overlap, name=tenant)
        finally:
            await db.dispose()

    results = _run(run())
    if as_json:
        typer.echo(json.dumps(results))
        return
    if not results:
        typer.echo("no tenants to export", err=True)
    for r in results:
        if not r["file"]:
            typer.echo(f"{r['tenant']}: nothing new since the last export")
            continue
        counts = ", ".join(f"{n} {kind}" for kind, n in r["counts"].items())
        typer.echo(f"{r['tenant']}: wrote {r['file']} ({counts})")


# ----------------------------------------------------------------------------------------------- serving


@app.command(hidden=not SERVER)
@operator_command
def serve(
    host: Annotated[str, typer.Option(envvar="PROMOFLOW_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PROMOFLOW_PORT", help="0 picks a free port.")] = 8080,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Create (once) a demo tenant with sample data.")
    ] = False,
    ftp_port: Annotated[
        int | None, typer.Option(envvar="PROMOFLOW_FTP_PORT", help="FTP port (0: free).")
    ] = None,
    no_ftp: Annotated[bool, typer.Option("--no-ftp", help="Do not start the FTP server.")] = False,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run the in-process worker.")] = False,
) -> None:
    """Run everything in one process: migrations, the API, the FTP server and the worker (the embedded mode)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, create_dir=True, host=host, port=port, ftp_port=ftp_port)
    runserver.serve(settings, demo=demo, worker=not no_worker, ftp=not no_ftp)


@app.command(hidden=not SERVER)
@operator_command
def api(
    host: Annotated[str, typer.Option(envvar="PROMOFLOW_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PROMOFLOW_PORT", help="0 picks a free port.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", min=1, help="API processes (PostgreSQL only).")] = 1,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Run only the HTTP API (scale out: many of these behind a load balancer, on PostgreSQL)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, create_dir=True, host=host, port=port)
    runserver.api_only(settings, workers=workers)


@app.command(hidden=not SERVER)
@operator_command
def worker(
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    once: Annotated[bool, typer.Option("--once", help="Run until no job is left, then exit.")] = False,
) -> None:
    """Run a background worker (any number of them on PostgreSQL)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, create_dir=True)
    runserver.worker_only(settings, once=once)


@app.command(hidden=not SERVER)
@operator_command
def ftp(
    host: Annotated[str, typer.Option("--host", envvar="PROMOFLOW_FTP_HOST")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar="PROMOFLOW_FTP_PORT", help="0 picks a free port.")
    ] = 2121,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Run only the FTP(S) server (uploads reach the workers through the database and the data dir)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, create_dir=True, ftp_host=host, ftp_port=port)
    runserver.ftp_only(settings)


# -------------------------------------------------------------------------------------- integrator: outbox
# These commands use only promoflow.client (plain `pip install promoflow`); never import the server here.

OutboxDir = Annotated[
    Path | None,
    typer.Option("--outbox-dir", envvar="PROMOFLOW_OUTBOX_DIR", help="The SDK outbox directory of the till."),
]
ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="PROMOFLOW_API_URL", help="Base URL of the Engage API.")
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="PROMOFLOW_API_KEY", help="The tenant's API key.")
]


def _check_ftp_url(value: str | None) -> str | None:
    """A malformed --ftp-url is a usage error naming the problem (never the password), not a traceback."""
    if value:
        from ..client._ftp import FtpTarget

        try:
            FtpTarget.from_url(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{exc} (expected ftp://user:password@host:port or ftps://…)") from None
    return value


FtpUrl = Annotated[
    str | None,
    typer.Option(
        "--ftp-url",
        envvar="PROMOFLOW_FTP_URL",
        help="ftp://user:password@host:port (or ftps://).",
        callback=_check_ftp_url,
    ),
]
FtpCaFile = Annotated[
    Path | None,
    typer.Option(
        "--ftp-ca-file",
        envvar="PROMOFLOW_FTP_CA_FILE",
        help="PEM CA file that signed the FTPS server's certificate.",
    ),
]
ApiVersion = Annotated[int, typer.Option("--api-version", help="2 or 3: which Engage paths to use.")]


ContactCachePath = Annotated[
    Path | None,
    typer.Option(
        "--contact-cache",
        envvar="PROMOFLOW_CONTACT_CACHE",
        help="The till's SQLite file of contact GUIDs (default: contacts.sqlite3 in the outbox directory).",
    ),
]
CONTACT_CACHE_FILE = "contacts.sqlite3"


def _error(text: str) -> None:
    """One line on stderr, never wrapped (paths and intent ids stay whole for people and scripts alike)."""
    console.print(f"[red]error[/red] {text}", soft_wrap=True, highlight=False)


def _need(value: Any, name: str) -> Any:
    if not value:
        _error(f"{name} is required (option or environment variable)")
        raise typer.Exit(2)
    return value


def _existing_outbox(value: Path | None) -> Path:
    """The outbox directory named by --outbox-dir: it must exist, and be an outbox (or a new, empty folder)."""
    directory = Path(_need(value, "--outbox-dir / PROMOFLOW_OUTBOX_DIR"))
    if not directory.is_dir():
        _error(
            f"no outbox at {directory}: the folder does not exist (check --outbox-dir / PROMOFLOW_OUTBOX_DIR)"
        )
        raise typer.Exit(2)
    if not (directory / "pending").is_dir() and any(directory.iterdir()):
        _error(
            f"{directory} is not an outbox (it has no pending/, queued/, … folders); "
            "--outbox-dir names the folder the till's Outbox(...) was given"
        )
        raise typer.Exit(2)
    return directory


def _intent_line(intent: Any) -> str:
    text = f"{intent.kind.value:<14} {intent.state.value:<8} {intent.verdict or '-':<24} {intent.id}"
    promotion = intent.detail.get("promotionName")
    if promotion:
        text += f"\n    promotion {promotion!r} (assignment {intent.detail.get('assignmentId')})"
    return f"{text}\n    {intent.reason}" if intent.reason else text


@outbox_app.command("status")
def outbox_status(outbox_dir: OutboxDir = None, as_json: JsonOut = False) -> None:
    """Count intents per state; list those needing attention (conflicts, refusals, dead letters)."""
    from ..client import Outbox

    with Outbox(_existing_outbox(outbox_dir)) as outbox:
        status = outbox.status()
    if as_json:
        typer.echo(json.dumps(status.to_json()))
        return
    typer.echo(f"outbox {status.directory}")
    typer.echo("  " + "  ".join(f"{state.value}: {count}" for state, count in status.counts.items()))
    if status.attention:
        typer.echo(f"needs attention ({len(status.attention)}) — `promoflow outbox ack ID…` once dealt with:")
        for intent in status.attention:
            typer.echo("  " + _intent_line(intent))


@outbox_app.command("ack")
def outbox_ack(
    intent_ids: Annotated[
        list[str] | None, typer.Argument(help="Ids of intents that need attention (see `outbox status`).")
    ] = None,
    all_listed: Annotated[
        bool, typer.Option("--all", help="Acknowledge every intent that needs attention.")
    ] = False,
    outbox_dir: OutboxDir = None,
    as_json: JsonOut = False,
) -> None:
    """Acknowledge intents that need attention (conflicts, refusals, dead letters) once the POS has dealt with
    them: they leave the attention list of `outbox status`; their files stay (`done`/`settled`/`dead`).

    Exit status: 0 all acknowledged; 2 an id is unknown or needs no attention (nothing changed);
    1 an intent is busy (a sync pass holds it): try again."""
    from ..client import Outbox

    ids = list(intent_ids or [])
    if bool(ids) == all_listed:
        _error("give the ids to acknowledge, or --all")
        raise typer.Exit(2)
    with Outbox(_existing_outbox(outbox_dir)) as outbox:
        attention = {intent.id: intent for intent in outbox.status().attention}
        if all_listed:
            ids = list(attention)
        wrong = [i for i in ids if i not in attention]
        if wrong:
            for intent_id in wrong:
                found = outbox.get(intent_id)
                why = "no such intent" if found is None else (
                    "already acknowledged" if found.acknowledged else f"{found.state.value}: needs no attention"
                )  # fmt: skip
                _error(f"{intent_id}: {why}")
            raise typer.Exit(2)
        acknowledged: list[str] = []
        busy: list[str] = []
        for intent_id in ids:
            with outbox.claimed(attention[intent_id]) as held:
                if held is None:
                    busy.append(intent_id)
                else:
                    outbox.acknowledge(held)
                    acknowledged.append(intent_id)
    if as_json:
        typer.echo(json.dumps({"acknowledged": acknowledged, "busy": busy}))
    else:
        typer.echo(f"acknowledged {len(acknowledged)}" + "".join(f"\n  {i}" for i in acknowledged))
        for intent_id in busy:
            console.print(
                f"[yellow]busy[/yellow] {intent_id}: a sync pass holds it; try again", soft_wrap=True
            )
    if busy:
        raise typer.Exit(1)


@outbox_app.command("sync")
def outbox_sync(
    outbox_dir: OutboxDir = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    ftp_url: FtpUrl = None,
    ftp_ca_file: FtpCaFile = None,
    contact_cache: ContactCachePath = None,
    api_version: ApiVersion = 2,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the server's import results.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for import results at most.")] = 120.0,
    forever: Annotated[bool, typer.Option("--forever", help="Keep syncing (the background agent).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes with --forever.")] = 60.0,
    as_json: JsonOut = False,
) -> None:
    """Deliver the outbox: settle online what the API answers, upload the rest over FTP(S), read the results
    (and note the GUIDs of contacts they name in the contact cache).

    Exit status: 0 everything delivered; 3 delivered, but conflicts or refusals need attention (listed);
    1 something is still undelivered (server unreachable, or no result within --timeout)."""
    import ssl

    from ..client import ContactCache, EngageClient, Outbox, RetryPolicy, SyncAgent

    directory = _existing_outbox(outbox_dir)
    if not api_url and not ftp_url:
        _need(None, "--api-url / PROMOFLOW_API_URL or --ftp-url / PROMOFLOW_FTP_URL")
    if api_version not in (2, 3):
        _error("--api-version is 2 or 3")
        raise typer.Exit(2)
    tls = ssl.create_default_context(cafile=str(ftp_ca_file)) if ftp_ca_file else None
    client = None
    if api_url:
        key = _need(api_key, "--api-key / PROMOFLOW_API_KEY")
        client = EngageClient(api_url, key, api_version=3 if api_version == 3 else 2)
    try:
        with (
            Outbox(directory) as outbox,
            ContactCache(contact_cache or directory / CONTACT_CACHE_FILE) as contacts,
        ):
            agent = SyncAgent(
                outbox, client, ftp_url, tls_context=tls, retry=RetryPolicy.background(), contacts=contacts
            )
            if forever:
                console.print(f"syncing {directory} every {interval:.0f}s (Ctrl-C stops)")
                try:
                    agent.run_forever(interval=interval)
                except KeyboardInterrupt:
                    return
                return
            report = agent.sync_until_settled(timeout) if wait else agent.run_once()
            status = outbox.status()
    finally:
        if client is not None:
            client.close()
    if as_json:
        typer.echo(json.dumps({**report.to_json(), "status": status.to_json()}))
    else:
        typer.echo(report.summary())
        for error in report.errors:
            typer.echo(f"  ! {error}")
        if report.attention:
            typer.echo(
                f"needs attention ({len(report.attention)}) — `promoflow outbox ack ID…` once dealt with:"
            )
            for intent in report.attention:
                typer.echo("  " + _intent_line(intent))
    if report.undelivered:
        raise typer.Exit(1)
    if report.attention:
        raise typer.Exit(3)


@demo_app.command("checkout")
def demo_checkout(
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    outbox_dir: OutboxDir = None,
    contact_cache: ContactCachePath = None,
    email: Annotated[
        str, typer.Option(help="The customer (a contact of `serve --demo`).")
    ] = "alva@example.com",
    store: Annotated[str, typer.Option(help="The store's external id.")] = "DEMO-STORE-1",
    channel: Annotated[str, typer.Option(help="POS or ECOM.")] = "POS",
) -> None:
    """A scripted checkout against a server (e.g. `promoflow serve --demo`), printing each step's outcome.

    --outbox-dir is the outbox itself (the same folder `outbox status|sync --outbox-dir` take); without it, a
    new temporary folder."""
    import tempfile
    from decimal import Decimal

    from ..client import Basket, BasketLine, CheckoutFlow, ContactCache, EngageClient, Outbox, RetryPolicy

    url = _need(api_url, "--api-url / PROMOFLOW_API_URL")
    key = _need(api_key, "--api-key / PROMOFLOW_API_KEY")
    directory = Path(outbox_dir) if outbox_dir else Path(tempfile.mkdtemp(prefix="promoflow-demo-outbox-"))

    def show(step: str, result: Any) -> None:
        extra = f" ({result.message})" if result.message else ""
        typer.echo(f"{step:<18} {result.status.value}{extra}")

    vat = Decimal(25)
    basket = Basket(
        (
            BasketLine("SHIRT-01", Decimal(1), Decimal("399.00"), article_name="Shirt", tax_percent=vat),
            BasketLine("SOCKS-02", Decimal(2), Decimal("49.00"), article_name="Socks", tax_percent=vat),
        ),
        "SEK",
    )
    with (
        EngageClient(url, key, retry=RetryPolicy.interactive()) as client,
        Outbox(directory) as outbox,
        ContactCache(contact_cache or directory / CONTACT_CACHE_FILE) as contacts,
    ):
        flow = CheckoutFlow(client, outbox, store_external_id=store, channel=channel, contacts=contacts)
        typer.echo(f"outbox {outbox.directory}")
        sale = flow.start()
        identified = sale.identify(email=email)
        show("identify", identified)
        if identified.contact_id:
            typer.echo(f"  contact {identified.contact_id}")
        fetched = sale.fetch_promotions()
        show("fetch promotions", fetched)
        for promotion in sale.promotions:
            typer.echo(f"  {promotion.id}  {promotion.name}")
        priced = sale.apply(basket)
        typer.echo(f"{'apply':<18} total {priced.total_gross} → {priced.total_paid} {priced.currency}")
        for application in priced.promotions:
            typer.echo(f"  {application.promotion.name}: {application.status.value} {application.amount}"
                       + (f" ({application.reason})" if application.reason else ""))  # fmt: skip
        for instruction in priced.instructions:
            typer.echo(f"  cashier: {instruction}")
        if identified.contact_id or identified.key:
            show("update contact", sale.update_contact({"lastPurchaseStore": store}))
        done = sale.complete()
        for result in done.redemptions:
            show("redeem", result)
            typer.echo(
                f"  {result.promotion_name or result.assignment_id} (assignment {result.assignment_id})"
            )
        show("receipt", done.receipt)
        typer.echo(f"receipt {done.unique_receipt_id}: {'all online' if done.online else 'see above'}")
        status = outbox.status()
        counts = ", ".join(f"{state.value} {count}" for state, count in status.counts.items() if count)
        typer.echo(f"outbox {counts}")
        if status.undelivered:
            typer.echo(f"deliver the rest: promoflow outbox sync --outbox-dir {outbox.directory} …")


from .keys import key_app  # noqa: E402  (needs this module's helpers)
from .users import user_app  # noqa: E402  (needs this module's helpers)

app.add_typer(user_app, name="user", hidden=not SERVER)
app.add_typer(key_app, name="key", hidden=not SERVER)


def main() -> None:  # pragma: no cover - console entry point
    """The `promoflow` command: the app, with a last word for anything that escapes a command (one line; set
    PROMOFLOW_TRACEBACK=1 for the traceback)."""
    import os
    import sys

    try:
        app()
    except Exception as exc:
        if os.environ.get("PROMOFLOW_TRACEBACK"):
            raise
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in SERVER_PACKAGES:
            print(f"error: {INSTALL_SERVER}", file=sys.stderr)
            sys.exit(1)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: unexpected {type(exc).__name__}: {first} (set PROMOFLOW_TRACEBACK=1 for the traceback)",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
