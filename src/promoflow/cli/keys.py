"""`promoflow key …`: a tenant's named API keys (create, list, revoke, rotate, allow-list). The same service as
the admin UI's Settings page and the /api/v2/promoflow/keys extension."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ._operator import operator_command
from .main import DataDir, DbUrl, JsonOut, _columns, _ready_settings, _run, _with_db, console

key_app: typer.Typer = typer.Typer(help="A tenant's named API keys.", no_args_is_help=True)

AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-ip", metavar="CIDR", help="An address or network that may use the key (repeatable)."
    ),
]


def _call(data_dir: Any, database_url: Any, tenant: str, work: Any) -> tuple[Any, Any]:
    """Run ``work(service, conn, tenant_row)`` in one transaction; returns (its result, the tenant's zone)."""
    from zoneinfo import ZoneInfo

    from ..kit.clock import SystemClock
    from ..server.audit import Actor
    from ..server.tenant.keys import ApiKeyService
    from ..server.tenant.service import TenantService

    settings = _ready_settings(data_dir, database_url)
    now = SystemClock().now()

    async def run(conn: Any) -> tuple[Any, Any]:
        row = await TenantService(now).by_name(conn, tenant)
        return await work(ApiKeyService(now, Actor.cli()), conn, row), ZoneInfo(row.time_zone)

    return _run(_with_db(settings, run))  # type: ignore[no-any-return]


def _secret_out(new: Any, tz: Any, as_json: bool, verb: str, tenant: str) -> None:
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, **new.as_json(tz)}))
        return
    console.print(
        f"{verb} key [bold]{new.key.name}[/bold] of {tenant} (scope {new.key.scope}); the secret, shown once:"
    )
    typer.echo(new.secret)


@key_app.command("create")
@operator_command
def key_create(
    tenant: str,
    name: Annotated[
        str, typer.Option("--name", help="The key's name, unique among the tenant's active keys.")
    ],
    allow_ip: AllowOpt = None,
    scope: Annotated[
        str, typer.Option("--scope", help="api (the Engage API) or admin (also key management).")
    ] = "api",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a named key and print its secret (shown once; stored hashed)."""
    new, tz = _call(data_dir, database_url, tenant,
                    lambda svc, conn, row: svc.create(conn, row.id, name, allow=allow_ip or None, scope=scope))  # fmt: skip
    _secret_out(new, tz, as_json, "created", tenant)


@key_app.command("list")
@operator_command
def key_list(
    tenant: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """The tenant's keys: active ones first, then revoked ones (prefixes only, never secrets)."""
    keys, tz = _call(data_dir, database_url, tenant, lambda svc, conn, row: svc.list(conn, row.id))
    rows = [k.as_json(tz) for k in keys]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = [["name", "prefix", "scope", "status", "last used", "created", "allow"]]
    for k in rows:
        status = f"revoked {k['revokedOn']}" if k["revokedOn"] else "active"
        table.append([k["name"], k["prefix"] + "…", k["scope"], status, k["lastUsedOn"] or "never",
                      k["createdOn"], ", ".join(k["ipAllowList"]) or "any address"])  # fmt: skip
    for line in _columns(table):
        typer.echo(line)


@key_app.command("revoke")
@operator_command
def key_revoke(
    tenant: str, name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Revoke the active key of that name (running servers refuse it within PROMOFLOW_API_KEY_CACHE_SECONDS)."""
    key, tz = _call(data_dir, database_url, tenant, lambda svc, conn, row: svc.revoke(conn, row.id, name))
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, **key.as_json(tz)}))
    else:
        typer.echo(f"key {key.name} of {tenant} revoked")


@key_app.command("rotate")
@operator_command
def key_rotate(
    tenant: str, name: str, as_json: JsonOut = False, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """A new secret for the key of that name (printed once); the old secret stops working (running servers:
    within PROMOFLOW_API_KEY_CACHE_SECONDS). Its name, scope and allow-list stay."""
    new, tz = _call(data_dir, database_url, tenant, lambda svc, conn, row: svc.rotate(conn, row.id, name))
    _secret_out(new, tz, as_json, "rotated", tenant)


@key_app.command("allow")
@operator_command
def key_allow(
    tenant: str, name: str, allow_ip: AllowOpt = None, as_json: JsonOut = False, data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:  # fmt: skip
    """Set the key's own IP allow-list (checked in addition to the tenant's ipAllowList); without --allow-ip the
    key's list is removed (any address the tenant allows)."""
    key, tz = _call(data_dir, database_url, tenant,
                    lambda svc, conn, row: svc.set_allowlist(conn, row.id, name, allow_ip or None))  # fmt: skip
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, **key.as_json(tz)}))
    else:
        typer.echo(f"key {key.name} of {tenant}: allowed from {', '.join(key.ip_allowlist) or 'any address'}")
