"""`promoflow`: a thin CLI over the same services the API uses.

Server commands import the server lazily, so an integrator who installed only `promoflow` (no `[server]` extra)
can still run the outbox commands.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="promoflow: Engage-compatible promotions server and integrator tools.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
export_app = typer.Typer(help="Files the server writes for integrators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(export_app, name="export")

console = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="PROMOFLOW_DATA_DIR", help="Data directory (SQLite, FTP tree).")
]
DbUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="PROMOFLOW_DATABASE_URL", help="Database URL; default SQLite in data dir."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for scripts.")]


def settings_for(data_dir: Path | None, database_url: str | None, **extra: Any) -> Any:
    from ..server.config import Settings

    values: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    if database_url is not None:
        values["database_url"] = database_url
    settings = Settings(**values)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


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
    from ..server.exceptions import PromoflowError

    if isinstance(exc, PromoflowError):
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(2) from exc
    raise exc


# ---------------------------------------------------------------------------------------------- database


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Apply all schema migrations."""
    from ..server.migrate import upgrade

    settings = settings_for(data_dir, database_url)
    upgrade(settings.resolved_database_url())
    console.print("database is up to date")


@db_app.command("check")
def db_check(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Exit non-zero when the database is behind the code or differs from the models."""
    from ..server.migrate import drift, is_current

    url = settings_for(data_dir, database_url).resolved_database_url()
    if not is_current(url):
        console.print("[red]the database needs `promoflow db upgrade`[/red]")
        raise typer.Exit(1)
    diff = drift(url)
    if diff:
        console.print(f"[red]models and database differ:[/red] {diff}")
        raise typer.Exit(1)
    console.print("database matches the models")


# ----------------------------------------------------------------------------------------------- tenants


@tenant_app.command("create")
def tenant_create(
    name: str,
    time_zone: Annotated[str, typer.Option("--time-zone", help="IANA zone for date-only validity.")] = "Europe/Stockholm",
    currency: Annotated[str, typer.Option(help="Default currency (ISO 4217) of MONEY promotions.")] = "SEK",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a tenant and print its API key (shown once)."""
    from ..kit.clock import SystemClock
    from ..server import tenant_setup
    from ..server.migrate import upgrade

    settings = settings_for(data_dir, database_url)
    upgrade(settings.resolved_database_url())
    try:
        info = _run(tenant_setup.create_tenant(settings, SystemClock().now(), name, time_zone, currency))
    except Exception as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(info))
    else:
        console.print(f"tenant [bold]{info['name']}[/bold] created ({info['tenantId']})")
        for k, v in info.items():
            if k not in ("name", "tenantId"):
                console.print(f"  {k}: {v}")
        typer.echo(info["apiKey"])


@tenant_app.command("list")
def tenant_list(as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """List tenants."""
    from ..kit.clock import SystemClock
    from ..server.tenant.service import TenantService

    settings = settings_for(data_dir, database_url)
    rows = _run(_with_db(settings, lambda conn: TenantService(SystemClock().now()).list(conn)))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    table = Table("name", "tenantId", "timeZone", "currency", "activeKeys", "createdOn")
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("name", "tenantId", "timeZone", "currency", "activeKeys", "createdOn")))
    Console().print(table)


@tenant_app.command("rotate-key")
def tenant_rotate_key(name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Revoke the tenant's keys and print a new one (running servers stop accepting the old key within seconds)."""
    from ..kit.clock import SystemClock
    from ..server.tenant.service import TenantService

    settings = settings_for(data_dir, database_url)
    try:
        key = _run(_with_db(settings, lambda conn: TenantService(SystemClock().now()).rotate_key(conn, name)))
    except Exception as exc:
        _fail(exc)
        return
    typer.echo(json.dumps({"name": name, "apiKey": key}) if as_json else key)


@tenant_app.command("rotate-ftp-password")
def tenant_rotate_ftp_password(
    name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Replace the tenant's FTP password and print the new one (the old one stops working within seconds)."""
    from ..kit.clock import SystemClock
    from ..server.transfer.accounts import rotate_ftp_password

    settings = settings_for(data_dir, database_url)
    try:
        info = _run(
            _with_db(settings, lambda conn: rotate_ftp_password(conn, settings, name, SystemClock().now()))
        )
    except Exception as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(info) if as_json else info["ftpPassword"])


@export_app.command("promotions")
def export_promotions_cmd(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant (default: every tenant).")] = None,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Write the promotion export now: assignments assigned, redeemed and deleted since the last export."""
    from datetime import timedelta

    from ..kit.clock import SystemClock
    from ..server.db import Database
    from ..server.migrate import upgrade
    from ..server.transfer.export import export_all
    from ..server.transfer.files import FileStore

    settings = settings_for(data_dir, database_url)
    upgrade(settings.resolved_database_url())

    async def run() -> Any:
        db = Database(settings.resolved_database_url(), pool_size=2)
        try:
            overlap = timedelta(seconds=settings.export_overlap_seconds)
            store = FileStore(settings.data_dir)
            return await export_all(db, store, SystemClock().now(), overlap=overlap, name=tenant)
        finally:
            await db.dispose()

    try:
        results = _run(run())
    except Exception as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(results))
        return
    for r in results:
        console.print(f"{r['tenant']}: {r['file'] or 'nothing new'} {r['counts'] or ''}")


# ----------------------------------------------------------------------------------------------- serving


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="PROMOFLOW_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PROMOFLOW_PORT", help="0 picks a free port.")] = 8080,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    demo: Annotated[bool, typer.Option("--demo", help="Create (once) a demo tenant with sample data.")] = False,
    ftp_port: Annotated[int | None, typer.Option(envvar="PROMOFLOW_FTP_PORT", help="FTP port (0: free).")] = None,
    no_ftp: Annotated[bool, typer.Option("--no-ftp", help="Do not start the FTP server.")] = False,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run the in-process worker.")] = False,
) -> None:
    """Run everything in one process: migrations, the API, the FTP server and the worker (the embedded mode)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, host=host, port=port, ftp_port=ftp_port)
    runserver.serve(settings, demo=demo, worker=not no_worker, ftp=not no_ftp)


@app.command()
def api(
    host: Annotated[str, typer.Option(envvar="PROMOFLOW_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PROMOFLOW_PORT")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="API processes (PostgreSQL only).")] = 1,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Run only the HTTP API (scale out: many of these behind a load balancer, on PostgreSQL)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url, host=host, port=port)
    runserver.api_only(settings, workers=workers)


@app.command()
def worker(
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    once: Annotated[bool, typer.Option("--once", help="Run until no job is left, then exit.")] = False,
) -> None:
    """Run a background worker (any number of them on PostgreSQL)."""
    from ..server import runserver

    settings = settings_for(data_dir, database_url)
    runserver.worker_only(settings, once=once)


@app.command()
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

    settings = settings_for(data_dir, database_url, ftp_host=host, ftp_port=port)
    runserver.ftp_only(settings)


def main() -> None:  # pragma: no cover - console entry point
    app()
