"""The one place errors become HTTP: Engage-style JSON ``{statusCode, errorCode, message}``."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from ...kit.errtext import error_line
from ...wire.engage import error_code, error_text
from ...wire.errors import ErrorCode
from ..exceptions import (
    BadRequestError,
    InternalError,
    InvalidJsonError,
    InvalidPayloadError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PromoflowError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
    error_for,
)

log = logging.getLogger("promoflow.api")

# The generic error of each status the framework itself answers with (unknown route, wrong method, …).
_GENERIC: dict[int, type[PromoflowError]] = {
    e.status: e
    for e in (
        BadRequestError, NotFoundError, MethodNotAllowedError, PayloadTooLargeError, UnsupportedMediaTypeError,
        ServiceUnavailableError,
    )
}  # fmt: skip


def error_response(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"statusCode": status, "errorCode": code.value, "message": message}, status, headers=headers
    )


def error_body(exc: PromoflowError) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequestsError | ServiceUnavailableError):
        headers["Retry-After"] = str(exc.retry_after)
    return (
        exc.status,
        {"statusCode": exc.status, "errorCode": exc.code.value, "message": exc.message},
        headers,
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_error(errors: list[Any]) -> PromoflowError:
    """The error of a body or parameter that failed its schema: the field path and what is wrong with it. A
    validator that names an error code (a createdDate out of range → `InvalidCreatedDate`) gets that code."""
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        return InvalidJsonError(
            f"the body is not valid JSON: {detail.get('ctx', {}).get('error', 'parse error')}"
        )
    for e in errors:
        code = error_code(e)
        if code is not None:
            return error_for(code, f"{_field_path(tuple(e.get('loc', ())))}: {error_text(e)}")
    msgs = []
    for e in errors[:10]:
        where = _field_path(tuple(e.get("loc", ())))
        msgs.append(f"{where}: {error_text(e)}")
    return InvalidPayloadError("; ".join(msgs))


def _respond(exc: PromoflowError, extra: dict[str, str] | None = None) -> Response:
    status, body, headers = error_body(exc)
    return JSONResponse(body, status, headers={**headers, **(extra or {})})


def allowed_methods(request: Request, named: str) -> str:
    """Every method served at this path. The router names only those of the first route whose path matched, but
    several routes share a path (GET, PUT and DELETE of a promotion); the OpenAPI document lists them all."""
    methods = {m.strip().upper() for m in named.split(",") if m.strip()}
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        if _template(template).fullmatch(path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods))


@functools.lru_cache(maxsize=512)
def _template(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)))


CLIENT_CLOSED = 499  # nginx's "client closed request": no answer reached anyone; not the server's failure


def client_gone(scope: Any) -> None:
    """A request whose client went away before its body arrived (a till killed or its network lost mid-request):
    logged as information and recorded as `CLIENT_CLOSED` in the access log and the metrics, never a 5xx (which
    would page an operator). Nothing was written: the body was never read whole."""
    log.info("api.client_disconnected path=%s", scope.get("path", ""))


def install(app: FastAPI) -> None:
    @app.exception_handler(PromoflowError)
    async def _promoflow(_request: Request, exc: PromoflowError) -> Response:
        return _respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        return _respond(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # The framework could not read the body as JSON at all (not UTF-8, nested too deeply).
            err: PromoflowError = InvalidJsonError(f"the body is not valid JSON: {exc.detail}")
        else:
            cls = _GENERIC.get(exc.status_code)
            if cls is None:
                log.warning("api.unmapped_http_status status=%s", exc.status_code)
                cls = InternalError
            err = cls(str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
        return _respond(err, headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        client_gone(request.scope)
        return Response(status_code=CLIENT_CLOSED)  # the answer reaches nobody

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        # The database refused a value that passed validation (a NUL character in text, a number or date
        # out of its range): the request's fault, so a 400, never a 500.
        log.info("api.data_error path=%s error=%s", request.url.path, type(exc.orig).__name__)
        return _respond(
            InvalidPayloadError(
                "a value in the request cannot be stored or searched (a NUL character, or out of range)"
            )
        )

    async def _database_unavailable(request: Request, exc: Exception) -> Response:
        # The database could not be reached or could not serve the request now (connection refused or lost, no
        # connection slot or pool connection free, a lock or statement timeout, a serialization failure or
        # deadlock): nothing was written, and the same request may succeed in a moment. A 503 with Retry-After
        # says so, where a 500 would tell the integrator's retry policy that the request itself failed.
        log.warning("api.database_unavailable path=%s error=%s: %s", request.url.path, type(exc).__name__,
                    error_line(exc))  # fmt: skip
        return _respond(
            ServiceUnavailableError("the database is not available; retry shortly", retry_after=1)
        )

    for unavailable in (OperationalError, InterfaceError, PoolTimeout, psycopg.OperationalError,
                        psycopg.InterfaceError, ConnectionError):  # fmt: skip
        app.add_exception_handler(unavailable, _database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("api.unhandled_error path=%s", request.url.path)
        return _respond(InternalError("an unexpected error occurred; it has been logged"))
