"""`promoflow user …`: people who sign in to the admin web UI (/admin) and their role in each tenant."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ._operator import settings_for
from .main import DataDir, DbUrl, JsonOut, _fail, _run, _with_db, console

user_app = typer.Typer(help="Admin UI users and their roles per tenant.", no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]
RoleOpt = Annotated[str, typer.Option("--role", help="admin, marketer or viewer.")]


def _call(data_dir: Any, database_url: Any, work: Any, *, migrate: bool = False) -> Any:
    from ..kit.clock import SystemClock
    from ..server.admin.users import UserService
    from ..server.audit import Actor
    from ..server.migrate import upgrade

    settings = settings_for(data_dir, database_url)
    if migrate:
        upgrade(settings.resolved_database_url())
    try:
        return _run(
            _with_db(settings, lambda conn: work(UserService(SystemClock().now(), Actor.cli()), conn))
        )
    except Exception as exc:
        _fail(exc)


@user_app.command("create")
def user_create(
    email: str, tenant: TenantOpt, role: RoleOpt, as_json: JsonOut = False, data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:  # fmt: skip
    """Create a user with a role in a tenant and print their generated password (shown once). For an existing
    user, add the role in this tenant (the password stays as it is)."""
    new = _call(data_dir, database_url, lambda svc, conn: svc.create(conn, email, tenant, role), migrate=True)
    out = {"email": new.email, "password": new.password, "tenant": new.tenant, "role": new.role.value}
    if as_json:
        typer.echo(json.dumps(out))
        return
    console.print(f"user [bold]{new.email}[/bold] is {new.role.value} of {new.tenant}")
    if new.password is None:
        console.print("(an existing user: their password is unchanged)")
    else:
        console.print("password (shown once):")
        typer.echo(new.password)


@user_app.command("list")
def user_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:  # fmt: skip
    """List users with their role in each tenant."""
    rows = _call(data_dir, database_url, lambda svc, conn: svc.list(conn, tenant))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("email", "tenant", "role", "disabled")
    for r in rows:
        table.add_row(r["email"], r["tenant"], r["role"], "yes" if r["disabled"] else "")
    Console().print(table)


@user_app.command("set-role")
def user_set_role(
    email: str, tenant: TenantOpt, role: RoleOpt, as_json: JsonOut = False, data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:  # fmt: skip
    """Change a user's role in a tenant."""
    out = _call(data_dir, database_url, lambda svc, conn: svc.set_role(conn, email, tenant, role))
    typer.echo(json.dumps(out) if as_json else f"{out['email']} is now {out['role']} of {out['tenant']}")


@user_app.command("disable")
def user_disable(
    email: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Stop a user from signing in; their sessions end at once."""
    out = _call(data_dir, database_url, lambda svc, conn: svc.disable(conn, email))
    typer.echo(json.dumps(out) if as_json else f"{out['email']} is disabled")


@user_app.command("enable")
def user_enable(
    email: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Let a disabled user sign in again."""
    out = _call(data_dir, database_url, lambda svc, conn: svc.enable(conn, email))
    typer.echo(json.dumps(out) if as_json else f"{out['email']} is enabled")


@user_app.command("reset-password")
def user_reset_password(
    email: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Give a user a new generated password (shown once); their sessions end at once."""
    out = _call(data_dir, database_url, lambda svc, conn: svc.reset_password(conn, email))
    typer.echo(json.dumps(out) if as_json else out["password"])
