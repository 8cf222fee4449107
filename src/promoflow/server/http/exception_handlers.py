"""The one place errors become HTTP: Engage-style JSON ``{statusCode, errorCode, message}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ..exceptions import PromoflowError, RateLimited, Unavailable

log = logging.getLogger("promoflow.api")

_HTTP_CODES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"statusCode": status, "errorCode": code, "message": message}, status, headers=headers)


def error_body(exc: PromoflowError) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return exc.status, {"statusCode": exc.status, "errorCode": exc.code, "message": exc.message}, headers


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        return "InvalidJson", f"the body is not valid JSON: {detail.get('ctx', {}).get('error', 'parse error')}"
    msgs = []
    for e in errors[:10]:
        where = _field_path(tuple(e.get("loc", ())))
        msgs.append(f"{where}: {e.get('msg')}")
    return "InvalidPayload", "; ".join(msgs)


def install(app: FastAPI) -> None:
    @app.exception_handler(PromoflowError)
    async def _promoflow(_request: Request, exc: PromoflowError) -> Response:
        status, body, headers = error_body(exc)
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        code, message = validation_message(list(exc.errors()))
        return error_response(400, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "HttpError"), str(exc.detail))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        # The database refused a value that passed validation (a NUL character in text, a number or date
        # out of its range): the request's fault, so a 400, never a 500.
        log.info("api.data_error path=%s error=%s", request.url.path, type(exc.orig).__name__)
        message = "a value in the request cannot be stored or searched (a NUL character, or out of range)"
        return error_response(400, "InvalidPayload", message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("api.unhandled_error path=%s", request.url.path)
        return error_response(500, "InternalError", "an unexpected error occurred; it has been logged")
