"""What the operator commands share: is the server installed, which database a command opens (said on stderr),
and one clear line — never a traceback — for what goes wrong around a command (a missing or unreachable
database, a busy port, a bad setting), with a JSON error object on stdout when the command was asked for JSON.

Only the standard library, typer and click at import time: the integrator's `promoflow` (no `[server]` extra)
imports this module too.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import typer

from ..kit.errtext import error_line

SERVER_PACKAGES = ("fastapi", "sqlalchemy", "alembic", "uvicorn", "pydantic_settings")
_SERVER_MODULES = (*SERVER_PACKAGES, "psycopg", "aiosqlite", "pyftpdlib")
INSTALL_SERVER = 'the promoflow server is not installed here: pip install "promoflow[server]"'
TRACEBACK_ENV = "PROMOFLOW_TRACEBACK"


def server_installed() -> bool:
    """True when the `[server]` extra's packages can be imported (looked up, not imported: this is cheap)."""
    for name in SERVER_PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def fail(
    line: str,
    code: int = 1,
    *,
    as_json: bool = False,
    error: str = "Error",
    status: int | None = None,
    message: str | None = None,
) -> None:
    """Say what went wrong in one line on stderr (and, for --json, as the API's error object on stdout:
    ``{"statusCode", "errorCode", "message"}``, statusCode only for the API's own errors), then exit."""
    if as_json:
        body: dict[str, Any] = {"errorCode": error, "message": message or line}
        if status is not None:
            body = {"statusCode": status, **body}
        typer.echo(json.dumps(body))
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def need_server() -> None:
    if not server_installed():
        fail(INSTALL_SERVER)


class _Context:
    database: str | None = None
    """The database the running command opened, as `describe_database` names it (for error lines)."""


context = _Context()


def settings_for(
    data_dir: Path | None, database_url: str | None, *, create_dir: bool = False, **extra: Any
) -> Any:
    """The server's settings for a command (flags over environment), the database named on stderr."""
    from ..server.config import Settings, describe_database, parse_database_url

    values: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    if database_url is not None:
        parse_database_url(database_url)  # a bad URL is one line, not a settings validation report
        values["database_url"] = database_url
    settings = Settings(**values)
    if create_dir:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    context.database = describe_database(settings.resolved_database_url())
    typer.echo(_database_line(context.database, settings.effective_log_format), err=True)
    return settings


def _database_line(database: str, log_format: str) -> str:
    """The database a command opens, on stderr: text, or a JSON line like the server's logs with
    PROMOFLOW_LOG_FORMAT=json (a server process's stderr is then JSON from its first line)."""
    if log_format != "json":
        return f"database: {database}"
    import logging

    from ..kit.jsonlog import JsonFormatter

    record = logging.LogRecord("promoflow.cli", logging.INFO, __file__, 0, "cli.database database=%s", (database,),
                               None)  # fmt: skip
    return JsonFormatter().format(record)


F = TypeVar("F", bound=Callable[..., Any])


def operator_command(fn: F) -> F:
    """Wrap a server command: refuse at once without the server extra, and turn what goes wrong into one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        need_server()
        as_json = bool(kwargs.get("as_json", False))
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            explained = explain(exc)
            if explained is None:
                if os.environ.get(TRACEBACK_ENV):
                    raise
                explained = (
                    f"unexpected {type(exc).__name__}: {_first_line(exc)} (set {TRACEBACK_ENV}=1 for the traceback)",
                    1, "InternalError", None,
                )  # fmt: skip
            line, code, error, status = explained
            message = exc.message if status is not None else None  # type: ignore[attr-defined]
            fail(line, code, as_json=as_json, error=error, status=status, message=message)

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _driver_message(exc: BaseException) -> str:
    return error_line(exc, 1000).removeprefix("connection failed: ")


def explain(exc: BaseException) -> tuple[str, int, str, int | None] | None:
    """(line, exit code, error code, HTTP-like status) for what an operator can act on; None for a bug."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _SERVER_MODULES:
        return INSTALL_SERVER, 1, "ServerNotInstalled", None  # before this function imports them
    from pydantic import ValidationError
    from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

    from ..server.config import OperatorError
    from ..server.exceptions import PromoflowError

    where = context.database or "the database"
    if isinstance(exc, PromoflowError):
        return f"{exc.code}: {exc.message}", 2, str(exc.code), exc.status
    if isinstance(exc, OperatorError):
        return str(exc), exc.exit_code, exc.error, None
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"PROMOFLOW_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else str(e["msg"]).removeprefix("Value error, ")  # a rule between settings names them itself
            for e in exc.errors()
        )
        return f"invalid setting {problems}", 2, "InvalidSetting", None
    if isinstance(exc, OperationalError | InterfaceError) or _is_connect_error(exc):
        message = _driver_message(exc)
        if "does not exist" in message and "database" in message:
            return (
                f"cannot open {where}: {message}; create the database (createdb) and run `promoflow db upgrade`",
                1, "DatabaseUnreachable", None,
            )  # fmt: skip
        if "database is locked" in message:
            return f"{where} is locked by another process: {message}", 1, "DatabaseUnreachable", None
        return (
            f"cannot reach {where}: {message}; is the database running? check --database-url or "
            "PROMOFLOW_DATABASE_URL",
            1, "DatabaseUnreachable", None,
        )  # fmt: skip
    if isinstance(exc, DatabaseError):
        return f"cannot use {where}: {_driver_message(exc)}", 1, "DatabaseError", None
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"an address is already in use: {exc.strerror}", 1, "PortInUse", None
    return None


def _is_connect_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the server extra brings it
        return isinstance(exc, ConnectionError)
    return isinstance(exc, psycopg.OperationalError | ConnectionError)
